"""Fault matrix, interruption rows: SIGKILL at many points, SIGINT and SIGTERM.

Kills land at exact moments through driver.py (the kill is a real SIGKILL of the build process);
the `heavy` test adds kills at random times of a slowed build."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from driver import SCAN_STARTED
from fault_util import (assert_no_partial, build_args, completes, driver_cmd, fails, live,
                        run_faulty, temporaries)

KILL_POINTS = [
    # (target, nth call, what is on disk when the process dies)
    ("parse_header", 40, "index scan half done"),
    ("index_rename", 1, "cache index written, not renamed"),
    ("index_save", "1:after", "index cached, nothing copied"),
    ("file_write", 5, "a file half written in its split's staging folder"),
    ("journal_add", 30, "a file written, not journaled"),
    ("publish", 1, "train and val written and journaled, not published"),
    ("publish", 3, "train and val published, test not"),
    ("write_split", 1, "train copied, no manifest yet"),
    ("manifest_rename", 2, "train.csv in place, its list a temporary file"),
    ("manifest_rename", 5, "val's list a temporary file"),
]


#: Where the split folders exist before the build (an earlier, interrupted run published
#: them), files are written in place: each through a temporary name, renamed when whole.
IN_PLACE_KILL_POINTS = [
    ("file_write", 5, "a temporary file half written"),
    ("file_rename", 9, "a temporary file whole, not renamed"),
    ("journal_add", 30, "a file renamed, not journaled"),
]

#: the same moments with files copied by worker processes, 4 files per task (driver.py)
PARALLEL_KILL_POINTS = [("file_write", 5, ""), ("journal_add", 30, ""), ("publish", 1, ""),
                        ("publish", 3, "")]
PARALLEL_TASK_FILES = 4


@pytest.mark.parametrize("spec,target,n,in_place",
                         [("", t, n, False) for t, n, _ in KILL_POINTS]
                         + [("", t, n, True) for t, n, _ in IN_PLACE_KILL_POINTS]
                         + [("parallel,", t, n, False) for t, n, _ in PARALLEL_KILL_POINTS]
                         + [("parallel,", "file_rename", 9, True)],
                         ids=[f"{t}-{n}" for t, n, _ in KILL_POINTS]
                         + [f"in-place-{t}-{n}" for t, n, _ in IN_PLACE_KILL_POINTS]
                         + [f"parallel-{t}-{n}" for t, n, _ in PARALLEL_KILL_POINTS]
                         + ["parallel-in-place-file_rename-9"])
def test_sigkill_then_rerun_completes(manual, out, env, want, spec, target, n, in_place):
    for split in ("train", "val", "test") if in_place else ():
        (out / split).mkdir(parents=True)
    r = run_faulty(f"{spec}kill:{target}:{n}", manual, out, env)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert_no_partial(out, want)
    if (spec, target, n) == ("parallel,", "publish", 3):  # one pass over both tars: the train
        # tar's splits (copied first, 4 files per task) got their manifests while test copied
        assert (out / "train.csv").is_file() and (out / "val.csv").is_file()
        assert not (out / "test.csv").exists()
    summary = completes(manual, out, env)  # also: verify passes, no temporary file is left
    assert_no_partial(out, want)
    if target == "journal_add" and spec:  # each task's files are journaled (flushed) together:
        # only the task in hand is lost (train and val come from one pass over the train tar)
        before = int(n) - 1
        assert sum(s["kept"] for s in summary["splits"].values()) >= before - before % PARALLEL_TASK_FILES
    if target in ("write_split", "manifest_rename", "publish"):  # train was whole before the kill
        assert summary["splits"]["train"]["copied"] == 0


def test_killed_staged_run_resumes_in_its_staging_folder(manual, out, env, want):
    """After kill -9 the staging folder holds the journaled files: the re-run keeps them there,
    drops what the list does not name (it would be published), and publishes once."""
    r = run_faulty("parallel,kill:journal_add:30", manual, out, env)  # journaled per 4 files
    assert r.returncode == -signal.SIGKILL, r.stderr
    staging = out / ".train.ltx-part"
    assert staging.is_dir() and not (out / "train").exists()
    wnid = next(p.name for p in staging.iterdir())
    (staging / wnid / "stray.JPEG").write_bytes(b"not listed")
    (staging / "n99999999").mkdir()
    summary = completes(manual, out, env)  # verify finds no stray file or folder
    assert summary["splits"]["train"]["kept"] + summary["splits"]["val"]["kept"] >= 28
    assert not staging.exists()
    assert_no_partial(out, want)


def test_a_copy_worker_dying_mid_file_publishes_only_whole_files(manual, out, env, want):
    """A worker killed halfway through a file (the OOM killer, say): the build stops with one
    error line, and the half-written file is removed before its split is published."""
    r = run_faulty("parallel,kill:worker_write:7", manual, out, env)
    fails(r, "copy worker process died")
    assert not (out / ".train.ltx-part").exists() and (out / "train").is_dir()
    assert temporaries(out) == []
    assert_no_partial(out, want)
    completes(manual, out, env)


def start_slow(spec: str, manual: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(driver_cmd(spec, *build_args(manual, out)), stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env})


def wait_for_scan(proc: subprocess.Popen) -> None:
    """Until the (slowed) header scan has begun: start-up takes long on a loaded machine."""
    line = proc.stderr.readline()
    assert line.strip() == SCAN_STARTED, line + proc.communicate()[1]
    assert proc.poll() is None


def wait_for_workers(proc: subprocess.Popen) -> None:
    wait_for_scan(proc)
    deadline = time.monotonic() + 30
    while len(_session_members(proc.pid)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "no scan workers"
        time.sleep(0.01)


def wait_for_files(proc: subprocess.Popen, out: Path, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(list(live(out).glob("*/*.JPEG"))) < n:
        assert proc.poll() is None and time.monotonic() < deadline, "build ended too early"
        time.sleep(0.01)


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"),
                                           (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("stage", ["copying", "indexing"])
def test_sigint_sigterm_stop_quickly_and_clean_up(manual, out, env, want, sig, code, word, stage):
    if stage == "copying":
        proc = start_slow("slow:0.05", manual, out, env)
        wait_for_files(proc, out, 12)
    else:
        proc = start_slow("slowscan:0.02", manual, out, env)
        wait_for_scan(proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    stopped_early(out, want)
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"ltextract: {word}; finished files are kept, re-run to complete")
    cache = Path(env["LTEXTRACT_CACHE_DIR"])
    assert temporaries(out, cache) == []
    assert_no_partial(out, want)
    completes(manual, out, env)


def stopped_early(out: Path, want: dict) -> None:
    """The build stopped with its (slowed) work unfinished, seconds of it left when the signal
    came: it did not run on to the end. No clock is read, so a loaded machine cannot fail it;
    how fast a stop is belongs to the benchmark."""
    written = [p for split in ("train", "val", "test") for p in (out / split).glob("*/*")
               if not p.name.startswith(".")]
    assert len(written) < len(want), "the build ran to its end after the signal"


def _session_members(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == sid:  # after "(comm)": state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"),
                                           (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("stage", ["scan", "copy"])
def test_signal_to_the_whole_group_during_parallel_work(manual, out, env, want, sig, code, word, stage):
    """Ctrl-C (and a batch system's SIGTERM) reach the worker processes too: still one
    message, no traceback from any of them, none left behind, no temporary file."""
    proc = start_parallel(stage, manual, out, env)
    os.killpg(proc.pid, sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    stopped_early(out, want)
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.strip() == f"ltextract: {word}; finished files are kept, re-run to complete"
    deadline = time.monotonic() + 30
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_members(proc.pid) == []
    assert temporaries(out, Path(env["LTEXTRACT_CACHE_DIR"])) == []
    assert_no_partial(out, want)
    completes(manual, out, env)


def start_parallel(stage: str, manual: Path, out: Path, env: dict) -> subprocess.Popen:
    """A slowed build in its own session, returned once its workers scan or copy."""
    slow = "slowscan:0.02" if stage == "scan" else "slow:0.2"  # seconds of work left after 12 files
    proc = subprocess.Popen(driver_cmd(f"parallel,{slow}", *build_args(manual, out)),
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
                            start_new_session=True)
    if stage == "scan":
        wait_for_workers(proc)
    else:
        wait_for_files(proc, out, 12)
        assert len(_session_members(proc.pid)) >= 2, "no copy workers"
    return proc


@pytest.mark.parametrize("stage", ["scan", "copy"])
def test_workers_die_with_a_killed_build(manual, out, env, want, stage):
    """SIGKILL (or the OOM killer) on the build alone: its workers would otherwise wait on its
    pipes forever."""
    proc = start_parallel(stage, manual, out, env)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_members(proc.pid) == []
    assert_no_partial(out, want)
    completes(manual, out, env)


def test_a_killed_scan_worker_is_one_clear_error(manual, out, env, want):
    r = run_faulty("parallel,kill:parse_header:10", manual, out, env)
    fails(r, "header-scan worker process died")
    assert_no_partial(out, want)
    completes(manual, out, env)


@pytest.mark.heavy
def test_sigkill_at_random_times(manual, out, env, want):
    rng = random.Random(2024)
    for _ in range(6):
        proc = start_slow("slow:0.01", manual, out, env)
        time.sleep(rng.uniform(0.3, 2.0))
        proc.kill()
        proc.communicate()
        assert_no_partial(out, want)
    completes(manual, out, env)
