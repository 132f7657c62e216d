"""--format tfds and --format hf for benchmarks other than ImageNet-LT: Places-LT (class names
out of sorted order, file names that repeat across classes) read with
`tfds.builder_from_directory` and `datasets.load_dataset`; SADE's sets as splits of their own."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ltextract.benchmarks import get
from ltextract.synth.archives import AroundSpec, make_benchmark_dir, places_around
from ltextract.synth.lists import ListsSpec, make_lists, write_lists
from lt_util import run_cli

PLACES = get("places_lt")
LIBRARY = {"train": "train", "val": "validation", "test": "test"}
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Places-LT lists over 6 classes (repeating file names), the 256 pair around them."""
    manual = tmp_path_factory.mktemp("places-formats")
    lines = make_lists(PLACES, ListsSpec(classes=6, seed=3))
    write_lists(manual, PLACES, lines)
    places_around(manual, lines, "256", AroundSpec(seed=3, payload=500))
    return manual, lines


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(manual: Path, out: Path, env, *extra, bench="places_lt"):
    r = run_cli("build", "--benchmark", bench, "--manual-dir", manual, "--splits-dir", manual, "--out", out,
                *extra, env=env)
    assert r.returncode == 0, r.stderr
    return r


def folder_bytes(out: Path) -> dict[str, bytes]:
    """`<class>/<file>` -> the image bytes of a --format folders build of the same lists."""
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for s in LIBRARY for p in (out / s).rglob("*.jpg")}


def test_places_lt_as_tfds(places, tmp_path, env):
    import tensorflow_datasets as tfds

    manual, lines = places
    build(manual, tmp_path / "folders", env)
    expected = folder_bytes(tmp_path / "folders")
    out = tmp_path / "out"
    build(manual, out, env, "--format", "tfds")
    version = out / "places_lt" / "1.0.0"
    assert (version / "label.labels.txt").read_text().split() == list(PLACES.classes)
    info = json.loads((version / "dataset_info.json").read_text())
    assert info["name"] == "places_lt" and "zhou2017places" in info["citation"]
    builder = tfds.builder_from_directory(str(version))
    assert builder.info.features["label"].names == list(PLACES.classes)  # the lists' order, not sorted
    for split, name in LIBRARY.items():
        ds = builder.as_dataset(split=name, decoders={"image": tfds.decode.SkipDecoding()})
        got = {x["file_name"].numpy().decode(): (x["image"].numpy(), int(x["label"].numpy())) for x in ds}
        want = {f"{ln.cls}/{ln.file}": ln.label for ln in lines[split]}
        assert {k: v[1] for k, v in got.items()} == want
        assert all(image == expected[key] for key, (image, _) in got.items())
    assert run_cli("verify", out, env=env).returncode == 0
    (version / "label.labels.txt").write_text("\n".join(sorted(PLACES.classes)) + "\n")
    r = run_cli("verify", out, env=env)
    assert r.returncode == 1 and "label.labels.txt: differs" in r.stderr, r.stderr


def test_places_lt_as_hf(places, tmp_path, env, hf):
    manual, lines = places
    build(manual, tmp_path / "folders", env)
    expected = folder_bytes(tmp_path / "folders")
    out = tmp_path / "out"
    build(manual, out, env, "--format", "hf", "--layout", "lists")
    dd = hf.load_dataset(str(out), verification_mode="all_checks")
    assert set(dd) == set(LIBRARY.values())
    for split, name in LIBRARY.items():
        assert dd[name].features["label"].names == list(PLACES.classes)
        rows = dd[name].cast_column("image", hf.Image(decode=False))
        assert [(x["file_name"], x["label"]) for x in rows] == [(f"{ln.cls}/{ln.file}", ln.label)
                                                                 for ln in lines[split]]
        assert [x["image"]["bytes"] for x in rows] == [expected[f"{ln.cls}/{ln.file}"] for ln in lines[split]]
    assert "# Places-LT" in (out / "README.md").read_text()
    assert run_cli("verify", out, env=env).returncode == 0


def test_sade_sets_are_splits_of_their_own(tmp_path, env, hf):
    manual = tmp_path / "manual"
    make_benchmark_dir(manual, get("imagenet_lt"), classes=5, seed=2)
    out = tmp_path / "out"
    build(manual, out, env, "--format", "hf", "--split", "test", "--split", "forward5", "--split", "forward50",
          bench="imagenet_lt")
    dd = hf.load_dataset(str(out), verification_mode="all_checks")
    assert set(dd) == {"test", "forward5", "forward50"}
    forward5 = (manual / "ImageNet_LT_forward5.txt").read_text().splitlines()
    assert [x["file_name"] for x in dd["forward5"]] == [line.split()[0].rsplit("/", 1)[1] for line in forward5]
    assert run_cli("verify", out, env=env).returncode == 0
