"""Fault matrix, the Hugging Face Hub's shards: each shard is read in a process of its own, which
writes its files and reports them as it goes. Ctrl-C, SIGTERM and kill -9 stop such a build like
any other: whole files only, nothing left running, and the re-run finishes."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from ltextract.synth.hub import HubSpec, make_hub_dir
from fault_util import (assert_no_partial, build_args, completes, driver_cmd, fails, live, run_faulty,
                        temporaries)
from test_fault_signals import _session_members, wait_for_files

SHAPES = ("tar.gz", "parquet")


@pytest.fixture(scope="session")
def hub_dirs(pristine, tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return {shape: make_hub_dir(pristine.train_tar, pristine.val_tar, pristine.lists["test"],
                                root / shape, HubSpec(shape=shape, row_group=5)) for shape in SHAPES}


@pytest.fixture(params=SHAPES)
def hub_manual(request, hub_dirs, pristine, tmp_path):
    manual = tmp_path / "hub"
    shutil.copytree(hub_dirs[request.param].data_dir, manual / "data")
    for path in pristine.lists.values():
        shutil.copy(path, manual)
    return manual


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"),
                                           (signal.SIGTERM, 143, "terminated")])
def test_a_signal_to_the_whole_group_stops_every_shard(hub_manual, out, env, want, sig, code, word):
    proc = subprocess.Popen(driver_cmd("slow:0.05", *build_args(hub_manual, out)), stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env}, start_new_session=True)
    wait_for_files(proc, out, 12)
    sent = time.monotonic()
    os.killpg(proc.pid, sig)
    _, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 3.0
    assert proc.returncode == code, stderr
    assert stderr.strip() == f"ltextract: {word}; finished files are kept, re-run to complete"
    deadline = time.monotonic() + 5
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_members(proc.pid) == []
    assert temporaries(out) == []
    assert_no_partial(out, want)
    completes(hub_manual, out, env)


def test_sigkill_after_files_are_journaled_then_rerun_keeps_them(hub_manual, out, env, want):
    r = run_faulty("slow:0.01,kill:journal_add:30", hub_manual, out, env)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert_no_partial(out, want)
    summary = completes(hub_manual, out, env)
    assert sum(s["kept"] for s in summary["splits"].values()) >= 1  # journaled in batches
    assert_no_partial(out, want)


def test_a_shard_process_dying_is_one_clear_error(hub_manual, out, env, want):
    r = run_faulty("kill:worker_write:7", hub_manual, out, env)
    fails(r, "a shard's copy process died")
    assert temporaries(out) == []
    assert_no_partial(out, want)
    assert live(out).exists() or (out / "train").exists()
    completes(hub_manual, out, env)
