"""--format hf: parquet shards and a dataset card read back with Hugging Face `datasets` (offline,
its cache in a temporary folder) and pyarrow; verified, resumed."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ltextract.benchmarks.classes import wnids
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import error_line, run_cli, tar_bytes

DRIVER = Path(__file__).parent / "faults" / "driver.py"
SPLITS = {"train": "train", "val": "validation", "test": "test"}


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("hf") / "manual",
                           SynthSpec(classes=12, seed=5, payload=2000, extras=True, fmt="pax"))


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(syn, out, env, *extra):
    return run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out,
                   "--format", "hf", *extra, env=env)


def listed(syn, split: str) -> list[tuple[str, str, int]]:
    """(OUT-relative path, file name, label) in list order."""
    rows = [line.split() for line in syn.lists[split].read_text().splitlines()]
    return [(f"{split}/{p.split('/', 1)[1]}", p.rsplit("/", 1)[1], int(label)) for p, label in rows]


def test_load_dataset_reads_every_split_with_image_and_classlabel(tmp_path, syn, env, hf):
    out = tmp_path / "out"
    r = build(syn, out, env, "--shard-size", "20KB", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)["splits"]
    expected = tar_bytes(syn)
    by_dir = hf.load_dataset(str(out), verification_mode="all_checks")
    bare = hf.load_dataset("parquet", data_dir=str(out / "data"))
    for dd in (by_dir, bare):
        assert set(dd) == set(SPLITS.values())
        for split, name in SPLITS.items():
            features = dd[name].features
            assert isinstance(features["image"], hf.Image)
            assert isinstance(features["label"], hf.ClassLabel) and features["label"].names == list(wnids())
            assert features["file_name"] == hf.Value("string")
            rows = dd[name].cast_column("image", hf.Image(decode=False))
            want = listed(syn, split)
            assert [(x["file_name"], x["label"]) for x in rows] == [(f, label) for _, f, label in want]
            assert [x["image"]["bytes"] for x in rows] == [expected[p] for p, _, _ in want]
    assert by_dir["train"][0]["image"].size == (8, 8)  # decodes to a PIL image
    for split, name in SPLITS.items():
        shards = sorted((out / "data").glob(f"{name}-*.parquet"))
        assert len(shards) > 1
        assert [s.name for s in shards] == [f"{name}-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
        counts = [pq.ParquetFile(s).metadata.num_rows for s in shards]
        assert max(counts) - min(counts) <= 1  # cut evenly, as push_to_hub cuts
        assert summary[split]["shards"] == [{"name": f"data/{s.name}", "examples": n} for s, n in zip(shards, counts)]
        rows = list(csv.DictReader((out / f"{split}.csv").open()))
        for row in rows:  # the manifest says where each example is
            table = pq.read_table(out / row["shard"], columns=["file_name"])
            assert table.column("file_name")[int(row["index"])].as_py() == row["file_name"]
    assert run_cli("verify", out, env=env).returncode == 0


def test_schema_is_what_datasets_writes(tmp_path, syn, env, hf):
    out = tmp_path / "out"
    assert build(syn, out, env, "--split", "val").returncode == 0
    path = next((out / "data").glob("validation-*.parquet"))
    schema = pq.read_schema(path)
    features = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=list(wnids())),
                            "file_name": hf.Value("string")})
    assert schema.remove_metadata() == features.arrow_schema.remove_metadata()
    assert hf.Features.from_arrow_schema(schema) == features
    column = pq.ParquetFile(path).metadata.row_group(0).column(0)
    assert (column.path_in_schema, column.compression) == ("image.bytes", "UNCOMPRESSED")


def test_card_lists_the_finished_splits_only(tmp_path, syn, env, hf):
    out = tmp_path / "out"
    assert build(syn, out, env, "--split", "test").returncode == 0
    assert set(hf.load_dataset(str(out), verification_mode="all_checks")) == {"test"}
    assert build(syn, out, env, "--split", "train").returncode == 0
    dd = hf.load_dataset(str(out), verification_mode="all_checks")
    assert {k: v.num_rows for k, v in dd.items()} == {"train": len(listed(syn, "train")),
                                                     "test": len(listed(syn, "test"))}
    assert run_cli("verify", out, env=env).returncode == 0


def test_verify_finds_damage_and_a_rebuild_repairs_it(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env, "--shard-size", "10files", "--split", "val").returncode == 0
    shard = out / "data" / "validation-00001-of-00005.parquet"
    table = pq.read_table(shard)
    images = table.column("image").to_pylist()
    images[3]["bytes"] = images[3]["bytes"][:-1] + b"\0"
    st = shard.stat()
    import pyarrow as pa

    pq.write_table(table.set_column(0, "image", pa.array(images, table.schema.field("image").type)), shard)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    card = out / "README.md"
    card.write_text(card.read_text().replace("num_examples: ", "num_examples: 1"))
    damaged_card = card.read_text()
    (out / "data" / "extra.parquet").write_bytes(b"x")
    r = run_cli("verify", out, "--json", env=env)
    assert r.returncode == 1
    problems = {p["path"]: p["problem"] for p in json.loads(r.stdout)["problems"]}
    assert "image differs" in problems["data/validation-00001-of-00005.parquet#3"]
    assert "differs" in problems["README.md"] and "stray" in problems["data/extra.parquet"]
    assert card.read_text() == damaged_card  # verify changes nothing
    (out / "data" / "extra.parquet").unlink()
    shard.unlink()
    r = build(syn, out, env, "--shard-size", "10files", "--split", "val", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["splits"]["val"]["kept_shards"] == 4
    assert run_cli("verify", out, env=env).returncode == 0


def test_killed_build_resumes_keeping_journaled_shards(tmp_path, syn, env, hf):
    out = tmp_path / "out"
    args = ["build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out, "-q",
            "--workers", "1", "--format", "hf", "--shard-size", "10files", "--split", "train"]
    r = subprocess.run([sys.executable, str(DRIVER), "kill:example_read:35", "--", *map(str, args)],
                       capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert r.returncode == -9, r.stderr
    assert sorted(p.name for p in (out / "data").iterdir() if not p.name.startswith(".")) == \
        [f"train-0000{i}-of-{-(-len(listed(syn, 'train')) // 10):05d}.parquet" for i in range(3)]
    assert not (out / "README.md").exists()  # no finished split yet
    again = build(syn, out, env, "--shard-size", "10files", "--split", "train", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["splits"]["train"]["kept_shards"] == 3
    assert not list(out.rglob("*.ltx-part"))
    assert run_cli("verify", out, env=env).returncode == 0
    other = build(syn, out, env, "--split", "train")  # another shard size: old shards go
    assert other.returncode == 0, other.stderr
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    assert hf.load_dataset(str(out))["train"].num_rows == len(listed(syn, "train"))


def test_a_readme_not_ours_is_left_alone(tmp_path, syn, env):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("# my notes\n")
    r = build(syn, out, env, "--split", "val")
    assert r.returncode == 1 and "was not written by ltextract" in error_line(r.stderr)
    assert (out / "README.md").read_text() == "# my notes\n"
