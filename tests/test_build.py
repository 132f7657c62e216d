"""End-to-end: the CLI as users run it, on tars made by ltextract.synth."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import run_cli, tar_bytes


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture
def syn(tmp_path):
    return make_manual_dir(tmp_path / "manual", SynthSpec(classes=6, seed=3, prefix="./"))


def build(syn, out, env, *extra):
    return run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir,
                   "--out", out, *extra, env=env)


def test_build_outputs_exact_bytes_manifests_and_lists(tmp_path, syn, env):
    out = tmp_path / "out"
    r = build(syn, out, env, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    expected = tar_bytes(syn)
    written = {p.relative_to(out).as_posix(): p.read_bytes()
               for split in ("train", "val", "test") for p in (out / split).rglob("*") if p.is_file()}
    assert written == expected
    for split in ("train", "val", "test"):
        rows = list(csv.DictReader((out / f"{split}.csv").open()))
        listed = syn.lists[split].read_text().splitlines()
        assert len(rows) == len(listed) == summary["splits"][split]["files"]
        for row, line in zip(rows, listed):
            src_path, label = line.split()
            assert row["path"] == f"{split}/{src_path.split('/', 1)[1]}" and row["label"] == label
            data = (out / row["path"]).read_bytes()
            assert int(row["size"]) == len(data)
            assert row["sha256"] == hashlib.sha256(data).hexdigest()
            assert row["file_name"] == row["path"].rsplit("/", 1)[1]
        rewritten = (out / f"ImageNet_LT_{split}.txt").read_text().splitlines()
        assert rewritten == [f"{r['path']} {r['label']}" for r in rows]
        assert summary["splits"][split]["list"]["published"] is False
        assert "not the published list" in r.stderr
    assert run_cli("verify", out, env=env).returncode == 0


def test_corrupt_then_repair(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env).returncode == 0
    victim = sorted((out / "val").rglob("*.JPEG"))[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = run_cli("verify", out, "--json", env=env)
    assert r.returncode == 1
    assert str(victim.relative_to(out)) in r.stderr
    report = json.loads(r.stdout)
    assert [p["path"] for p in report["problems"]] == [victim.relative_to(out).as_posix()]
    r = build(syn, out, env, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["splits"]["val"]["copied"] == 1
    assert run_cli("verify", out, env=env).returncode == 0


def test_rerun_on_complete_out_only_confirms(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env).returncode == 0
    r = build(syn, out, env, "--json")
    assert r.returncode == 0
    assert all(s["copied"] == 0 for s in json.loads(r.stdout)["splits"].values())


def test_verify_reports_stray_and_missing(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env).returncode == 0
    stray = out / "train" / "n01440764" / "extra.JPEG"
    stray.write_bytes(b"x")
    gone = sorted((out / "test").rglob("*.JPEG"))[0]
    gone.unlink()
    r = run_cli("verify", out, "--json", env=env)
    assert r.returncode == 1
    problems = {p["path"]: p["problem"] for p in json.loads(r.stdout)["problems"]}
    assert "stray" in problems["train/n01440764/extra.JPEG"]
    assert problems[gone.relative_to(out).as_posix()] == "missing"


def test_split_selection_and_second_build_merges(tmp_path, syn, env):
    out = tmp_path / "out"
    assert build(syn, out, env, "--split", "test").returncode == 0
    assert not (out / "train").exists()
    assert build(syn, out, env, "--split", "val").returncode == 0
    meta = json.loads((out / "ltextract.json").read_text())
    assert sorted(meta["splits"]) == ["test", "val"]
    assert run_cli("verify", out, env=env).returncode == 0


def test_killed_build_resumes(tmp_path, env):
    syn = make_manual_dir(tmp_path / "manual", SynthSpec(classes=20, seed=1, payload=40_000))
    out = tmp_path / "out"
    for delay in (0.4, 0.8):
        proc = subprocess.Popen([sys.executable, "-m", "ltextract", "build", "--manual-dir",
                                 str(syn.manual_dir), "--splits-dir", str(syn.manual_dir),
                                 "--out", str(out), "--workers", "1"],
                                env={**os.environ, **env}, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for p in out.rglob("*"):  # no final path holds partial data
            if p.is_file() and p.suffix == ".JPEG" and p.parent.parent.name in ("train", "val", "test"):
                assert p.stat().st_size > 0
    r = build(syn, out, env, "--json")
    assert r.returncode == 0, r.stderr
    assert not list(out.rglob("*.ltx-part"))
    assert run_cli("verify", out, env=env).returncode == 0


def test_custom_list_with_crlf_and_tabs_verifies(tmp_path, syn, env):
    path = syn.lists["test"]
    lines = path.read_text().splitlines()
    path.write_bytes(("\r\n".join(line.replace(" ", "\t") for line in lines)).encode())  # no final EOL
    out = tmp_path / "out"
    r = build(syn, out, env, "--split", "test")
    assert r.returncode == 0, r.stderr
    assert (out / "ImageNet_LT_test.txt").read_text().splitlines() == [
        "test/" + line.split("/", 1)[1] for line in lines]
    assert run_cli("verify", out, env=env).returncode == 0
