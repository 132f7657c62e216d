"""Places-LT from every Places365 shape (the easy-format tar, the 256 and large pairs, extracted
trees, stdin), ImageNet-100-LT, and what every benchmark's OUT holds: bytes, labels, manifests,
lists, exports, in both layouts and formats."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from ltextract.benchmarks import get
from ltextract.sources.places import deep_path
from ltextract.synth.archives import AroundSpec, ilsvrc_around, places_around
from ltextract.synth.lists import ListsSpec, chosen_classes, make_lists, write_lists
from lt_util import error_line, out_files, reference_members, run_cli

PLACES, IN100 = get("places_lt"), get("imagenet100_lt")
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Synthetic Places-LT lists (real class names and labels, with sub-categories) and every
    shape around them; trees extracted with tarfile, independent of ltextract."""
    root = tmp_path_factory.mktemp("places")
    # sub-categories, and the classes whose labels differ from Places365's own order
    classes = ("apartment_building-outdoor", "desert-sand", "desert_road", "field-wild", "zen_garden")
    base = make_lists(PLACES, ListsSpec(classes=len(classes), seed=5, counts=(7, 3, 12, 2, 5)))
    rename = dict(zip(chosen_classes(PLACES, len(classes)), classes))
    lines = {s: [ln._replace(cls=rename[ln.cls], label=PLACES.label_of[rename[ln.cls]]) for ln in ls]
             for s, ls in base.items()}
    lists = root / "lists"
    lists.mkdir()
    write_lists(lists, PLACES, lines)
    shapes = {}
    for shape in ("easyformat", "256", "large"):
        shapes[shape] = root / shape
        shapes[shape].mkdir()
        places_around(shapes[shape], lines, shape, AroundSpec(seed=5, payload=600))
    shapes["easy-tree"] = _extract(root / "easy-tree", shapes["easyformat"] / "places365standard_easyformat.tar")
    shapes["easy-root"] = shapes["easy-tree"] / "places365_standard"  # the manual dir is the tree itself
    tv = root / "torchvision"
    for tar in ("train_256_places365standard.tar", "val_256.tar"):
        _extract(tv, shapes["256"] / tar)
    (tv / "data_256").rename(tv / "data_256_standard")  # as torchvision's Places365 leaves it
    shapes["torchvision"] = tv
    large = root / "large-tree"
    for tar in ("train_large_places365standard.tar", "val_large.tar"):
        _extract(large, shapes["large"] / tar)
    shapes["large-tree"] = large
    return SimpleNamespace(lines=lines, lists=lists, shapes=shapes, expected=_expected(shapes["256"], lines))


def _extract(dest: Path, tar: Path) -> Path:
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest


def _expected(folder: Path, lines) -> dict[str, bytes]:
    """OUT path -> bytes, read from the 256 pair with tarfile."""
    train, val = (folder / "train_256_places365standard.tar").read_bytes(), (folder / "val_256.tar").read_bytes()
    members = {**{("train", n): (train, *at) for (_, n), at in
                  reference_members(folder / "train_256_places365standard.tar", False).items()},
               **{("val", n): (val, *at) for (_, n), at in reference_members(folder / "val_256.tar", False).items()}}
    out = {}
    for split, split_lines in lines.items():
        for ln in split_lines:
            name = f"data_256/{deep_path(ln.cls, ln.file)}" if ln.origin == "train" else f"val_256/{ln.file}"
            data, off, size = members[(ln.origin, name)]
            out[f"{split}/{ln.cls}/{ln.file}"] = data[off:off + size]
    return out


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(manual, lists, out, env, *extra, bench="places_lt", **kw):
    return run_cli("build", "--benchmark", bench, "--manual-dir", manual, "--splits-dir", lists,
                   "--out", out, *extra, env=env, **kw)


def images(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in out_files(out).items() if k.split("/")[0] in SPLITS}


@pytest.mark.parametrize("shape", ["easyformat", "256", "large", "easy-tree", "easy-root", "torchvision",
                                   "large-tree"])
def test_every_shape_builds_the_same_places_lt(places, tmp_path, env, shape):
    out = tmp_path / "out"
    r = build(places.shapes[shape], places.lists, out, env, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert images(out) == places.expected
    for split in SPLITS:
        assert summary["splits"][split]["files"] == len(places.lines[split])
        rows = list(csv.DictReader((out / f"{split}.csv").open()))
        assert list(rows[0]) == ["path", "label", "class", "size", "sha256", "file_name"]
        assert [(r["path"], int(r["label"]), r["class"]) for r in rows] == [
            (f"{split}/{ln.cls}/{ln.file}", ln.label, ln.cls) for ln in places.lines[split]]  # list order
        assert all(PLACES.label_of[r["class"]] == int(r["label"]) for r in rows)
        assert (out / f"Places_LT_{split}.txt").read_text() == "".join(
            f"{split}/{ln.cls}/{ln.file} {ln.label}\n" for ln in places.lines[split])
    meta = json.loads((out / "ltextract.json").read_text())
    assert (meta["benchmark"], meta["layout"]) == ("places_lt", "splits")
    assert run_cli("verify", out, env=env).returncode == 0


@pytest.mark.parametrize("shape,source", [("256", "train_256_places365standard.tar"),
                                          ("easyformat", "places365standard_easyformat.tar")])
def test_places_tars_from_stdin(places, tmp_path, env, shape, source):
    out = tmp_path / "out"
    with open(places.shapes[shape] / source, "rb") as f:
        r = build(places.shapes[shape], places.lists, out, env, "--train-source", "-", "--split", "train",
                  "--split", "val", stdin=f)
    assert r.returncode == 0, r.stderr
    assert images(out) == {k: v for k, v in places.expected.items() if not k.startswith("test/")}


def test_stream_reads_the_easy_format_tar_for_both_origins(places, tmp_path, env):
    out = tmp_path / "out"
    r = build(places.shapes["easyformat"], places.lists, out, env, "--strategy", "stream", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["strategy"] == {"train": "stream", "val": "stream"}
    assert images(out) == places.expected
    assert run_cli("verify", out, env=env).returncode == 0


def test_places_detection_and_its_errors(places, tmp_path, env):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = error_line(build(empty, places.lists, tmp_path / "o", env).stderr)
    assert "no Places365 train images in" in line and "places365standard_easyformat.tar" in line \
        and "data_256/" in line and "data_256_standard/" in line
    both = tmp_path / "both"  # the easy-format tar wins over a 256 pair beside it
    both.mkdir()
    for tar in ("places365standard_easyformat.tar",):
        os.symlink(places.shapes["easyformat"] / tar, both / tar)
    (both / "val_256.tar").write_bytes(b"not a tar at all")
    r = build(both, places.lists, tmp_path / "o2", env)
    assert r.returncode == 0 and "places365standard_easyformat.tar (Places365 tar)" in r.stderr, r.stderr
    r = build(empty, places.lists, tmp_path / "o3", env, "--train-source",
              places.shapes["torchvision"] / "data_256_standard", "--val-source",
              places.shapes["torchvision"] / "val_256")
    assert r.returncode == 0 and "letter/category" in r.stderr and "flat folder" in r.stderr, r.stderr
    assert images(tmp_path / "o3") == places.expected


def test_layout_lists_resolves_every_list_line(places, tmp_path, env):
    """Every file at its list path: loaders joining OUT with the published lists find them all;
    the lists rewritten relative to OUT are the input lists, byte for byte."""
    out = tmp_path / "out"
    assert build(places.shapes["256"], places.lists, out, env, "--layout", "lists").returncode == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [".ltextract", "train", "val"]
    for split in SPLITS:
        data = (places.lists / f"Places_LT_{split}.txt").read_bytes()
        assert (out / f"Places_LT_{split}.txt").read_bytes() == data
        for line in data.decode().splitlines():
            path, _ = line.split()
            assert (out / path).read_bytes() == places.expected[f"{split}/{path.split('/', 1)[1]}"]
    assert run_cli("verify", out, env=env).returncode == 0
    again = json.loads(build(places.shapes["easyformat"], places.lists, out, env, "--layout", "lists",
                             "--json").stdout)
    assert all(s["copied"] == 0 and s["kept_rechecked"] == s["files"] for s in again["splits"].values())
    (out / "train" / "zen_garden" / "extra.jpg").write_bytes(b"x")
    r = run_cli("verify", out, env=env)
    assert r.returncode == 1 and r.stderr.count("extra.jpg: stray file") == 1, r.stderr
    r = build(places.shapes["256"], places.lists, out, env)  # the other layout: refused
    assert "holds a --layout lists build" in error_line(r.stderr)
    r = build(places.shapes["256"], places.lists, out, env, "--layout", "lists", bench="imagenet_lt")
    assert "holds a places_lt build" in error_line(r.stderr)


def test_webdataset_keys_name_the_class(places, tmp_path, env):
    """Places365's train file names repeat across classes: a key is `<class>/<stem>`."""
    import webdataset as wds

    out = tmp_path / "out"
    assert build(places.shapes["256"], places.lists, out, env, "--format", "webdataset").returncode == 0
    assert run_cli("verify", out, env=env).returncode == 0
    got = {}
    for split in SPLITS:
        index = json.loads((out / f"{split}.json").read_text())
        for sample in wds.WebDataset([str(out / s["name"]) for s in index["shards"]], shardshuffle=False):
            cls, stem = sample["__key__"].split("/")
            got[f"{split}/{cls}/{stem}.jpg"] = (sample["jpg"], int(sample["cls"]))
    assert {k: v[0] for k, v in got.items()} == places.expected
    assert all(PLACES.label_of[k.split("/")[1]] == label for k, (_, label) in got.items())


def test_exports_match_the_lists(places, tmp_path, env):
    out = tmp_path / "out"
    assert build(places.shapes["256"], places.lists, out, env, "--split", "train").returncode == 0
    r = run_cli("stats", out, "--export", tmp_path / "meta", "--json", env=env)
    assert r.returncode == 0, r.stderr
    counts = [0] * 365
    for ln in places.lines["train"]:
        counts[ln.label] += 1
    meta = tmp_path / "meta"
    assert (meta / "classnames.txt").read_text().splitlines() == list(PLACES.classes)
    assert json.loads((meta / "class_counts.json").read_text()) == counts
    groups = json.loads((meta / "shot_groups.json").read_text())
    assert groups == {"many": [i for i, n in enumerate(counts) if n > 100],
                      "medium": [i for i, n in enumerate(counts) if 20 <= n <= 100],
                      "few": [i for i, n in enumerate(counts) if n < 20]}
    data = json.loads(r.stdout)
    assert data["benchmark"] == "places_lt" and sorted(data["groups"]["few"]["class_names"]) == sorted(
        {ln.cls for ln in places.lines["train"]})
    again = run_cli("stats", "--benchmark", "places_lt", "--splits-dir", places.lists, "--export",
                    tmp_path / "meta2", env=env)
    assert again.returncode == 0, again.stderr
    assert out_files(tmp_path / "meta2") == out_files(meta)
    # ImageFolder labels folders by sorting them; class_to_idx from classnames.txt gives the lists'
    folders = sorted({ln.cls for ln in places.lines["train"]})
    class_to_idx = {c: i for i, c in enumerate((meta / "classnames.txt").read_text().split())}
    assert [class_to_idx[c] for c in folders] != list(range(len(folders)))
    assert all(class_to_idx[ln.cls] == ln.label for ln in places.lines["train"])
    r = run_cli("stats", out, "--benchmark", "places_lt", env=env)
    assert r.returncode == 2


def test_imagenet100_lt(tmp_path, env):
    """ILSVRC2012's tars around ImageNet-100-LT-shaped lists: CMC's labels, not sorted wnids."""
    lines = make_lists(IN100, ListsSpec(classes=6, seed=2))
    manual = tmp_path / "manual"
    manual.mkdir()
    write_lists(manual, IN100, lines)
    tars = ilsvrc_around(manual, lines, AroundSpec(seed=2))
    out = tmp_path / "out"
    r = build(manual, manual, out, env, bench="imagenet100_lt")
    assert r.returncode == 0, r.stderr
    raw = {o: t.read_bytes() for o, t in tars.items()}
    refs = {"train": reference_members(tars["train"], True), "val": reference_members(tars["val"], False)}
    for split in SPLITS:
        rows = list(csv.DictReader((out / f"{split}.csv").open()))
        assert [(r["path"], int(r["label"])) for r in rows] == [
            (f"{split}/{ln.cls}/{ln.file}", IN100.label_of[ln.cls]) for ln in lines[split]]
        for row, ln in zip(rows, lines[split]):
            off, size = refs[ln.origin][(f"{ln.cls}.tar", ln.file) if ln.origin == "train" else ("", ln.file)]
            assert (out / row["path"]).read_bytes() == raw[ln.origin][off:off + size]
            assert row["sha256"] == hashlib.sha256(raw[ln.origin][off:off + size]).hexdigest()
    assert any(int(r["label"]) != sorted(IN100.classes).index(r["wnid"])
               for r in csv.DictReader((out / "train.csv").open()))
    assert run_cli("verify", out, env=env).returncode == 0
    stats = json.loads(run_cli("stats", out, "--json", env=env).stdout)
    assert stats["benchmark"] == "imagenet100_lt" and stats["images"] == len(lines["train"])
    (out / "train.csv").write_text((out / "train.csv").read_text().replace(",0,", ",1,", 1))
    r = run_cli("verify", out, env=env)
    assert r.returncode == 1 and "label 1 does not match" in r.stderr, r.stderr


def test_index_lists_places_tars(places, env):
    r = run_cli("index", "--manual-dir", places.shapes["256"], env=env)
    assert r.returncode == 0, r.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in r.stdout.splitlines()}
    assert set(rows) == {"train_256_places365standard.tar", "val_256.tar"}
    assert int(rows["val_256.tar"][2].split()[0]) == len(places.lines["test"])


def test_fetch_a_benchmarks_lists(places, tmp_path, http_server, monkeypatch):
    import ltextract
    from ltextract.benchmarks import places_lt
    from lt_util import with_split

    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    bench = PLACES
    for split in SPLITS:
        data = (places.lists / f"Places_LT_{split}.txt").read_bytes()
        spec = bench.split(split)
        pin = spec.pin.__class__(split, spec.pin.filename, data.count(b"\n"), len(data),
                                 hashlib.sha256(data).hexdigest(), (1, 99))
        url = http_server.route(f"/{split}", http_server.Reply(body=data))
        bench = with_split(spec.__class__(split, spec.origin, pin, (url,)), bench)
    monkeypatch.setattr(places_lt, "PLACES_LT", bench)
    got = ltextract.fetch(tmp_path / "d", benchmark="places_lt", splits=("test", "train"))
    assert list(got) == ["test", "train"]
    assert got["test"].read_bytes() == (places.lists / "Places_LT_test.txt").read_bytes()
    with pytest.raises(ltextract.LtError, match="unknown split 'uniform' of places_lt"):
        ltextract.fetch(tmp_path / "d", benchmark="places_lt", splits=("uniform",))
