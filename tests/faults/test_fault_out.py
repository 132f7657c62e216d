"""Fault matrix, hostile OUT rows: symlinks planted inside OUT, and two builds at once."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from fault_util import assert_no_partial, build, build_args, completes, driver_cmd, fails, live

WNID = "n01440764"  # label 0: always among the synthetic classes


def first_train_file(manual) -> str:
    return (manual / "ImageNet_LT_train.txt").read_text().split()[0].split("/", 1)[1]


@pytest.mark.parametrize("planted", [f"train/{WNID}", "train", "test", ".ltextract",
                                     ".train.ltx-part", f".train.ltx-part/{WNID}"])
def test_symlinked_folder_is_refused(tmp_path, manual, out, env, want, planted):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = out / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    fails(build(manual, out, env), str(link), "is a symlink", "never writes through links")
    assert list(elsewhere.iterdir()) == []
    assert_no_partial(out, want)
    link.unlink()
    completes(manual, out, env)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("planted", ["final", "temporary", "journal", "journal-temp", "manifest"])
def test_symlinked_file_is_replaced_never_followed(tmp_path, manual, out, env, want, planted):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    rel = first_train_file(manual)
    if planted in ("journal", "journal-temp", "manifest"):
        completes(manual, out, env)  # these exist from an earlier run
    link = out / {"final": f"train/{rel}",
                  "temporary": f"train/{WNID}/.{rel.split('/')[1]}.ltx-part",
                  "journal": ".ltextract/train.journal",
                  "journal-temp": ".ltextract/train.tmp",
                  "manifest": "train.csv"}[planted]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    completes(manual, out, env)
    assert victim.read_bytes() == b"precious"
    assert not link.is_symlink()
    assert_no_partial(out, want)


def test_symlinked_lock_file_is_refused(tmp_path, manual, out, env):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (out / ".ltextract").mkdir(parents=True)
    (out / ".ltextract" / "lock").symlink_to(victim)
    fails(build(manual, out, env), str(out / ".ltextract" / "lock"))
    assert victim.read_bytes() == b"precious"


def test_two_builds_at_once(tmp_path, manual, out, env, want):
    gate = tmp_path / "hold"  # the first build waits after 5 files until the gate is removed
    gate.touch()
    first = subprocess.Popen(driver_cmd(f"hold:{gate}:5", *build_args(manual, out)),
                             stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while len(list(live(out).glob("*/*.JPEG"))) < 5:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    second = build(manual, out, env)
    fails(second, f"another ltextract build (pid {first.pid}) is writing {out}")
    assert first.poll() is None  # the refusal came while the first was still copying
    gate.unlink()
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert_no_partial(out, want)
    completes(manual, out, env)  # and the lock is free again


@pytest.mark.parametrize("spec", ["", "parallel,"])
def test_folder_swapped_for_a_symlink_during_the_build(tmp_path, manual, out, env, want, spec):
    """Files are created relative to open folders (openat, no link followed): a class folder
    replaced by a link while the build runs stops it, and nothing lands where the link points."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    gate = tmp_path / "hold"  # the build waits after its first file until the swap is done
    gate.touch()
    proc = subprocess.Popen(driver_cmd(f"{spec}hold:{gate}:1", *build_args(manual, out)),
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while not list(live(out).glob("*/*.JPEG")):
        assert proc.poll() is None and time.monotonic() < deadline, "build ended too early"
        time.sleep(0.01)
    last = sorted(live(out).iterdir())[-1]  # copied last: its folder is not open yet
    last.rename(tmp_path / "moved")
    last.symlink_to(elsewhere, target_is_directory=True)
    gate.unlink()
    _, stderr = proc.communicate(timeout=60)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    swapped = out / "train" / last.name  # where the user finds it: the stopped split is published
    fails(r, f"{swapped} is a symlink", "never writes through links")
    assert list(elsewhere.iterdir()) == []
    swapped.unlink()
    completes(manual, out, env)
    assert_no_partial(out, want)
