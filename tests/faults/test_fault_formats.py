"""Fault matrix, the shard formats tfds and hf: a disk that fills during the build, and one too
small from the start."""
from __future__ import annotations

import pytest

from fault_util import build, run_faulty, temporaries
from lt_util import error_line, run_cli

FORMATS = [("tfds", "tfrecord"), ("tfds", "array_record"), ("hf", None)]


def options(fmt: str, file_format: str | None) -> list[str]:
    return ["--format", fmt, *(["--tfds-file-format", file_format] if file_format else [])]


@pytest.mark.parametrize("fmt, file_format", FORMATS)
def test_disk_full_while_writing_shards_then_rerun(tmpfs, manual, env, fmt, file_format):  # noqa: F811
    mnt = tmpfs("4m")
    out, ballast = mnt / "out", mnt / "ballast"
    r = run_faulty(f"fill:{ballast}:journal", manual, out, env, *options(fmt, file_format))
    assert r.returncode == 1, r.stderr
    line = error_line(r.stderr)
    assert "disk full while writing" in line and "free some space and re-run" in line
    assert temporaries(out) == []
    assert not [p for p in out.rglob("*") if p.is_file() and ".ltextract" not in p.parts
                and p.name not in ("features.json", "label.labels.txt")]  # no shard, no manifest
    ballast.unlink()
    r = build(manual, out, env, *options(fmt, file_format))
    assert r.returncode == 0, r.stderr
    assert run_cli("verify", out, env=env).returncode == 0


@pytest.mark.parametrize("fmt, file_format", FORMATS)
def test_too_little_space_is_refused_before_writing(tmpfs, manual, env, fmt, file_format):  # noqa: F811
    out = tmpfs("8k") / "out"
    r = build(manual, out, env, *options(fmt, file_format))
    assert r.returncode == 1 and "not enough free space" in error_line(r.stderr)
    assert not list(out.rglob("*.parquet")) and not list(out.rglob("imagenet_lt-*"))
