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
from fault_util import (assert_no_partial, build_args, completes, driver_cmd, fails, run_faulty,
                        temporaries)

KILL_POINTS = [
    # (target, nth call, what is on disk when the process dies)
    ("parse_header", 40, "index scan half done"),
    ("index_rename", 1, "cache index written, not renamed"),
    ("index_save", "1:after", "index cached, nothing copied"),
    ("file_write", 5, "a temporary file half written"),
    ("file_rename", 9, "a temporary file whole, not renamed"),
    ("journal_add", 30, "a file renamed, not journaled"),
    ("write_split", 1, "train copied, no manifest yet"),
    ("manifest_rename", 2, "train.csv in place, its list a temporary file"),
    ("manifest_rename", 5, "val's list a temporary file"),
]


#: the same moments with files copied by worker processes, 4 files per task (driver.py)
PARALLEL_KILL_POINTS = [("file_write", 5, ""), ("file_rename", 9, ""), ("journal_add", 30, "")]
PARALLEL_TASK_FILES = 4


@pytest.mark.parametrize("spec,target,n", [("", t, n) for t, n, _ in KILL_POINTS]
                         + [("parallel,", t, n) for t, n, _ in PARALLEL_KILL_POINTS],
                         ids=[f"{t}-{n}" for t, n, _ in KILL_POINTS]
                         + [f"parallel-{t}-{n}" for t, n, _ in PARALLEL_KILL_POINTS])
def test_sigkill_then_rerun_completes(manual, out, env, want, spec, target, n):
    r = run_faulty(f"{spec}kill:{target}:{n}", manual, out, env)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert_no_partial(out, want)
    summary = completes(manual, out, env)  # also: verify passes, no temporary file is left
    assert_no_partial(out, want)
    if target == "journal_add" and spec:  # each task's files are journaled (flushed) together:
        # only the task in hand is lost (train and val come from one pass over the train tar)
        before = int(n) - 1
        assert sum(s["kept"] for s in summary["splits"].values()) >= before - before % PARALLEL_TASK_FILES
    if target in ("write_split", "manifest_rename"):  # train was complete before the kill
        assert summary["splits"]["train"]["copied"] == 0


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
    while len(list(out.glob("train/*/*.JPEG"))) < n:
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
    sent = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 3.0  # "a second or two", with slack for a loaded CI machine
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"ltextract: {word}; finished files are kept, re-run to complete")
    cache = Path(env["LTEXTRACT_CACHE_DIR"])
    assert temporaries(out, cache) == []
    assert_no_partial(out, want)
    completes(manual, out, env)


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
    sent = time.monotonic()
    os.killpg(proc.pid, sig)
    _, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 3.0
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.strip() == f"ltextract: {word}; finished files are kept, re-run to complete"
    deadline = time.monotonic() + 5
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_members(proc.pid) == []
    assert temporaries(out, Path(env["LTEXTRACT_CACHE_DIR"])) == []
    assert_no_partial(out, want)
    completes(manual, out, env)


def start_parallel(stage: str, manual: Path, out: Path, env: dict) -> subprocess.Popen:
    """A slowed build in its own session, returned once its workers scan or copy."""
    slow = "slowscan:0.02" if stage == "scan" else "slow:0.05"
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
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 5
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
