"""--format webdataset: shards read back with the webdataset library, verify, resume, planning."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ltextract.formats import shards
from ltextract.plan import Job
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import error_line, run_cli, tar_bytes

wds = pytest.importorskip("webdataset")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("wds") / "manual",
                           SynthSpec(classes=8, seed=4, payload=3000, extras=True, fmt="pax"))


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(syn, out, env, *extra):
    return run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out,
                   "--format", "webdataset", *extra, env=env)


def read_back(out, split) -> list[tuple[str, bytes, int]]:
    index = json.loads((out / f"{split}.json").read_text())
    urls = [str(out / sh["name"]) for sh in index["shards"]]
    return [(s["__key__"], s["jpg"], int(s["cls"])) for s in wds.WebDataset(urls, shardshuffle=False)]


def test_shards_hold_every_sample_exactly_once(tmp_path, syn, env):
    out = tmp_path / "out"
    r = build(syn, out, env, "--shard-size", "20KB", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    expected = tar_bytes(syn)
    for split in ("train", "val", "test"):
        index = json.loads((out / f"{split}.json").read_text())
        assert summary["splits"][split]["shards"] == len(index["shards"]) > 1
        assert [sh["name"] for sh in index["shards"]] == \
            [f"{split}/{split}-{i:06d}.tar" for i in range(len(index["shards"]))]
        assert sorted(p.name for p in (out / split).iterdir()) == \
            sorted(sh["name"].split("/")[1] for sh in index["shards"])
        for sh in index["shards"]:
            assert (out / sh["name"]).stat().st_size == sh["size"]
            assert sh["size"] <= 20_000 or sh["samples"] == 1
        samples = read_back(out, split)
        assert sum(sh["samples"] for sh in index["shards"]) == len(samples) == index["samples"]
        rows = list(csv.DictReader((out / f"{split}.csv").open()))
        want = sorted((r["key"], expected[r["path"]], int(r["label"])) for r in rows)
        assert sorted(samples) == want  # every (key, bytes, class) exactly once
        assert len({k for k, _, _ in samples}) == len(samples) == len(expected_for(expected, split))
        for _, data, _ in samples:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        keys = [k for k, _, _ in samples]
        listed = [r["key"] for r in rows]
        assert (keys != listed) == (split == "train")  # train shuffled, val/test in list order
        assert not (out / f"ImageNet_LT_{split}.txt").exists()
    assert run_cli("verify", out, env=env).returncode == 0


def expected_for(expected, split):
    return [p for p in expected if p.startswith(f"{split}/")]


def test_same_inputs_same_shards_and_files_mode(tmp_path, syn, env):
    a, b = tmp_path / "a", tmp_path / "b"
    assert build(syn, a, env, "--shard-size", "7files", "--split", "train").returncode == 0
    assert build(syn, b, env, "--shard-size", "7files", "--split", "train").returncode == 0
    names = sorted(p.name for p in (a / "train").iterdir())
    assert names == sorted(p.name for p in (b / "train").iterdir())
    assert all((a / "train" / n).read_bytes() == (b / "train" / n).read_bytes() for n in names)
    index = json.loads((a / "train.json").read_text())
    assert [sh["samples"] for sh in index["shards"]][:-1] == [7] * (len(names) - 1)


def test_verify_catches_damage_and_rebuild_rewrites_only_that_shard(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env, "--shard-size", "5files", "--split", "val").returncode == 0
    victim = out / "val" / "val-000002.tar"
    data = bytearray(victim.read_bytes())
    data[512 + 100] ^= 0xFF  # inside the first image
    victim.write_bytes(bytes(data))
    (out / "val" / "notes.txt").write_text("x")
    r = run_cli("verify", out, "--json", env=env)
    assert r.returncode == 1
    problems = {p["path"]: p["problem"] for p in json.loads(r.stdout)["problems"]}
    assert any(p.startswith("val/val-000002.tar/") and "image differs" in what for p, what in problems.items())
    assert "stray" in problems["val/notes.txt"]
    (out / "val" / "notes.txt").unlink()
    r = build(syn, out, env, "--shard-size", "5files", "--split", "val", "--json")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)["splits"]["val"]
    assert (record["copied_shards"], record["kept_shards"]) == (1, record["shards"] - 1)
    assert run_cli("verify", out, env=env).returncode == 0


def test_changing_shard_size_replaces_old_shards(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env, "--shard-size", "3files", "--split", "test").returncode == 0
    assert build(syn, out, env, "--shard-size", "100files", "--split", "test").returncode == 0
    assert [p.name for p in (out / "test").iterdir()] == ["test-000000.tar"]
    assert run_cli("verify", out, env=env).returncode == 0


def test_formats_do_not_mix_in_one_out(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env, "--split", "val").returncode == 0
    r = run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out,
                "--split", "val", env=env)
    assert r.returncode == 1 and "--format webdataset" in error_line(r.stderr)


@pytest.mark.parametrize("text, want", [
    ("1GB", shards.ShardSize(max_bytes=10**9)), ("512MiB", shards.ShardSize(max_bytes=512 << 20)),
    ("2.5g", shards.ShardSize(max_bytes=2_500_000_000)), ("5000files", shards.ShardSize(max_files=5000)),
    ("1 file", shards.ShardSize(max_files=1))])
def test_parse_shard_size(text, want):
    assert shards.parse_shard_size(text) == want


@pytest.mark.parametrize("text", ["1000", "0files", "1.5files", "1KB", "big", "-1GB"])
def test_parse_shard_size_refuses(text):
    with pytest.raises(ValueError):
        shards.parse_shard_size(text)


def test_bad_shard_size_is_a_usage_error(tmp_path, syn, env):
    r = build(syn, tmp_path / "out", env, "--shard-size", "1000")
    assert r.returncode == 2 and "--shard-size" in r.stderr and "Traceback" not in r.stderr


def test_plan_bounds_and_keys(tmp_path):
    jobs = [Job("val", f"val/n0/ILSVRC2012_val_{i:08d}.JPEG", "n0", 0, tmp_path, 0, 700 + 300 * (i % 5))
            for i in range(60)]
    plan = shards.plan("val", jobs, shards.ShardSize(max_bytes=8192))
    assert [s.job for sh in plan for s in sh.samples] == jobs  # list order, nothing lost
    for sh in plan:
        assert sum(s.tar_bytes for s in sh.samples) + 1024 <= 8192
    assert plan[0].samples[0].key == "ILSVRC2012_val_00000000"
    assert shards.sample_key("a.b.JPEG") == "a_b" and shards.sample_key(".hidden") == "_hidden"  # no empty key
    dup = jobs[:1] + [Job("val", "val/n1/ILSVRC2012_val_00000000.JPEG", "n1", 1, tmp_path, 0, 10)]
    with pytest.raises(Exception, match="share the webdataset key"):
        shards.plan("val", dup, shards.ShardSize(max_files=10))


@pytest.mark.parametrize("name, size", [("a.jpg", 0), ("n01440764_10026.jpg", 110_000),
                                        ("k" * 97 + ".cls", 3), ("é" * 60 + ".jpg", 700)])
def test_headers_read_back_with_tarfile(name, size):
    import tarfile

    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    blob = shards._header(name, size) + payload + bytes(-size % 512) + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        (m,) = tf.getmembers()
        assert (m.name, m.size, m.isreg()) == (name, size, True)
        assert tf.extractfile(m).read() == payload


def test_stats_of_a_webdataset_out(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env, "--split", "train").returncode == 0
    a = json.loads(run_cli("stats", out, "--json").stdout)
    b = json.loads(run_cli("stats", "--splits-dir", syn.manual_dir, "--json").stdout)
    assert a["per_class"] == b["per_class"] == {w: n for w, n in syn.train_counts.items() if n}


def test_killed_webdataset_build_resumes_and_leaves_foreign_files(tmp_path, env):
    big = make_manual_dir(tmp_path / "manual", SynthSpec(classes=20, seed=1, payload=40_000))
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    foreign = out / "train" / "mine.tar"
    foreign.write_bytes(b"not ours")
    args = [sys.executable, "-m", "ltextract", "build", "--manual-dir", str(big.manual_dir), "--splits-dir",
            str(big.manual_dir), "--out", str(out), "--workers", "1", "--format", "webdataset",
            "--shard-size", "3files"]
    proc = subprocess.Popen(args, env={**os.environ, **env}, stderr=subprocess.PIPE)
    time.sleep(0.6)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = build(big, out, env, "--shard-size", "3files", "--json")
    assert r.returncode == 0, r.stderr
    assert not list(out.rglob("*.ltx-part"))
    assert foreign.read_bytes() == b"not ours"  # not ours to delete; verify reports it
    report = json.loads(run_cli("verify", out, "--json", env=env).stdout)
    assert [p["path"] for p in report["problems"]] == ["train/mine.tar"]
    foreign.unlink()
    assert run_cli("verify", out, env=env).returncode == 0
    r = build(big, out, env, "--shard-size", "4files")  # other parameters: old shards go
    assert r.returncode == 0, r.stderr
    assert run_cli("verify", out, env=env).returncode == 0


def test_sigkill_keeps_the_shards_journaled_before_it(tmp_path, env):
    """Each finished shard's journal line reaches the file at once: killed before the 4th is
    journaled, a re-run keeps the first three (they are not written again)."""
    syn = make_manual_dir(tmp_path / "manual", SynthSpec(classes=6, seed=3))
    out = tmp_path / "out"
    driver = Path(__file__).parent / "faults" / "driver.py"
    args = ["build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out,
            "-q", "--workers", "1", "--format", "webdataset", "--shard-size", "3files", "--split", "train"]
    r = subprocess.run([sys.executable, str(driver), "kill:journal_add:4", "--", *map(str, args)],
                       capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    again = build(syn, out, env, "--shard-size", "3files", "--split", "train", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["splits"]["train"]["kept_shards"] == 3
    assert run_cli("verify", out, env=env).returncode == 0
