"""Fault matrix, output-folder rows: disk full during a build; OUT not writable or a file.

Disk full needs a small file system: a tmpfs mount (root here); skipped where mounting is not
permitted. "Another process fills the disk" is injected by driver.py after the space check."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fault_util import assert_no_partial, build, completes, fails, run_faulty, temporaries


@pytest.mark.parametrize("when", ["journal", "copy:1", "copy:40", "manifest"])
def test_disk_full_then_rerun_after_freeing_space(tmpfs, manual, env, want, when):
    mnt = tmpfs("4m")
    out, ballast = mnt / "out", mnt / "ballast"
    r = run_faulty(f"fill:{ballast}:{when}", manual, out, env)
    line = fails(r, "free some space and re-run")
    assert "disk full while writing" in line or "No space left on device" in line
    assert str(out) in line  # names the file it could not write
    assert_no_partial(out, want)
    assert temporaries(out) == []
    if when == "manifest":
        assert not list(out.glob("*.csv")) and not (out / "ltextract.json").exists()
    ballast.unlink()
    completes(manual, out, env)


def test_too_little_space_is_refused_before_copying(tmpfs, manual, env, want):
    mnt = tmpfs("200k")
    fails(build(manual, mnt / "out", env), "not enough free space", str(mnt / "out"))
    assert not [p for p in (mnt / "out").rglob("*") if p.is_file() and ".ltextract" not in p.parts]
    assert temporaries(mnt / "out") == []  # nor the staging folders made on the way


def _no_work_done(env: dict) -> None:
    """Refused before any work: no list read into an index, no tar scanned."""
    assert not list(Path(env["LTEXTRACT_CACHE_DIR"]).rglob("*.ltidx"))


@pytest.mark.parametrize("case", ["read-only file system", "existing folder on a read-only fs"])
def test_out_not_writable(tmpfs, manual, env, case):
    if case == "read-only file system":
        out = tmpfs("1m", ro=True) / "out"
    else:
        mnt = tmpfs("1m")
        (mnt / "out").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        out = mnt / "out"
    fails(build(manual, out, env), f"cannot write to output folder {out}", "Read-only file system")
    _no_work_done(env)


@pytest.mark.parametrize("case", ["OUT is a file", "OUT is under a file", "OUT is a dangling link"])
def test_out_is_a_file(tmp_path, manual, env, case):
    target = tmp_path / "some.file"
    target.write_text("keep me")
    if case == "OUT is a file":
        out, needle = target, "exists and is not a folder"
    elif case == "OUT is under a file":
        out, needle = target / "out", "cannot write to output folder"
    else:
        out, needle = tmp_path / "link", "dangling symlink"
        out.symlink_to(tmp_path / "nowhere")
    fails(build(manual, out, env), str(out), needle)
    assert target.read_text() == "keep me"
    _no_work_done(env)
