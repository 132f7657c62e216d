"""Repair in one step: verify records what it found damaged (and changes no output file), the
next plain build rewrites exactly those and says so; build --recheck finds them without verify.
Every format: a damaged image in a class folder, a damaged sample in a webdataset, tfds or hf
shard."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import error_line, run_cli, tar_bytes

FORMATS = {"folders": (), "webdataset": ("--format", "webdataset", "--shard-size", "5files"),
           "tfds": ("--format", "tfds"), "hf": ("--format", "hf", "--shard-size", "5files")}


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("repair") / "manual", SynthSpec(classes=5, seed=8))


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(syn, out, env, fmt, *extra):
    r = run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out,
                *FORMATS[fmt], "--json", *extra, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


EXPECTED: dict[str, bytes] = {}  # OUT-relative path -> the image's bytes (from the synthetic tars)


def damage(out: Path, fmt: str, n: int = 2) -> list[str]:
    """Flip one byte of `n` train images (in place, in their shards for webdataset), keeping
    each file's size and mtime: the journal's test cannot tell. Returns what was damaged."""
    rows = list(csv.DictReader((out / "train.csv").open()))[1:1 + 4 * n:4]
    hit = []
    for row in rows:
        if fmt == "folders":
            path, at = out / row["path"], 0
        else:  # the image's bytes inside its shard, found by content (no reader involved)
            path = out / row["shard"]
            at = path.read_bytes().index(EXPECTED[row["path"]])
        st = path.stat()
        with open(path, "r+b") as f:
            f.seek(at + 20)
            byte = f.read(1)
            f.seek(at + 20)
            f.write(bytes([byte[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        hit.append(row["path"] if fmt == "folders" else row["shard"])
    return sorted(set(hit))


def built_and_damaged(syn, tmp_path: Path, env: dict, fmt: str) -> tuple[Path, list[str]]:
    EXPECTED.update(tar_bytes(syn))
    out = tmp_path / "out"
    build(syn, out, env, fmt)
    return out, damage(out, fmt)


def outputs(out: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of OUT but its state folder: bytes and mtime."""
    return {p.relative_to(out).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in out.rglob("*") if p.is_file() and ".ltextract" not in p.parts}


def test_a_plain_build_rereads_kept_shards(syn, tmp_path, env):
    """A kept shard is read back anyway (its samples' digests go into the manifest), so its
    whole hash is compared with the journal's too: damage is rewritten, never copied into the
    manifest (where verify would then find nothing wrong)."""
    out, hit = built_and_damaged(syn, tmp_path, env, "webdataset")
    summary, _ = build(syn, out, env, "webdataset")
    assert summary["splits"]["train"]["copied_shards"] == len(hit)
    assert run_cli("verify", out, env=env).returncode == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_records_and_a_plain_build_repairs_exactly_those(syn, tmp_path, env, fmt):
    out, hit = built_and_damaged(syn, tmp_path, env, fmt)
    before = outputs(out)
    r = run_cli("verify", out, env=env)
    assert r.returncode == 1
    line = error_line(r.stderr)
    assert line.endswith(f": {len(hit)} file(s) differ; re-run build to repair them"), line
    assert outputs(out) == before  # verify changes no output file
    again = run_cli("verify", out, "--json", env=env)
    assert sorted(json.loads(again.stdout)["repair"]["train"]) == hit
    summary, stderr = build(syn, out, env, fmt)
    assert f"train: rewriting {len(hit)} file(s) that verify found damaged" in stderr
    train = summary["splits"]["train"]
    if fmt == "folders":
        assert (train["copied"], train["kept"]) == (len(hit), train["files"] - len(hit))
    else:
        assert train["copied_shards"] == len(hit)
    written = {r.get("shard") or r["path"] for r in csv.DictReader((out / "train.csv").open())}
    changed = {rel for rel, v in outputs(out).items() if before[rel] != v and rel in written}
    assert changed == set(hit)  # exactly those rewritten
    assert run_cli("verify", out, env=env).returncode == 0
    assert not list((out / ".ltextract").glob("*.repair"))
    summary, stderr = build(syn, out, env, fmt)  # nothing left to repair
    assert "rewriting" not in stderr
    assert summary["splits"]["train"].get("copied", 0) == summary["splits"]["train"].get("copied_shards", 0) == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_build_recheck_finds_damage_without_verify(syn, tmp_path, env, fmt):
    out, hit = built_and_damaged(syn, tmp_path, env, fmt)
    if fmt == "folders":  # a plain build trusts the journal's size and mtime: it keeps them
        build(syn, out, env, fmt)
        assert run_cli("verify", out, "--json", env=env).returncode == 1
        for rel in (out / ".ltextract").glob("*.repair"):
            rel.unlink()  # as if verify had not run
    summary, _ = build(syn, out, env, fmt, "--recheck")
    train = summary["splits"]["train"]
    if fmt == "folders":
        assert (train["copied"], train["kept_rechecked"], train["kept"]) == (
            len(hit), train["files"] - len(hit), 0)
    elif fmt == "webdataset":  # each shard made again in memory, kept where equal
        assert (train["copied_shards"], train["kept_rechecked_shards"]) == (
            len(hit), train["shards"] - len(hit))
    else:  # tfds, hf: every shard made again from the source
        assert (train["copied_shards"], train["kept_shards"]) == (len(json.loads(
            (out / "ltextract.json").read_text())["splits"]["train"]["shards"]), 0)
    assert run_cli("verify", out, env=env).returncode == 0


def test_verify_where_nothing_can_be_recorded_says_how_to_repair(syn, tmp_path, env):
    """Where the record cannot be written, verify still reports, and points to --recheck."""
    out = tmp_path / "out"
    build(syn, out, env, "folders")
    hit = damage(out, "folders", 1)
    state = out / ".ltextract"
    for p in state.iterdir():
        p.unlink()
    state.rmdir()
    state.write_text("a file where the state folder belongs: nothing can be recorded")
    r = run_cli("verify", out, env=env)
    assert r.returncode == 1
    assert error_line(r.stderr).endswith(
        f": {len(hit)} file(s) differ; re-run build --recheck to repair them (not recorded:"
        f" {state} exists and is not a folder)"), r.stderr
