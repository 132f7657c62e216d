"""The val tar's splits built in a process of their own, side by side with the train tar's
(`pipeline.SIDE_MIN_FILES`; the driver's `alongside` fault lowers it to any size): the same
result as one process, and failures and signals on either side still end as one clean stop."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ltextract import pipeline
from fault_util import (assert_no_partial, build, build_args, completes, driver_cmd, fails, run_faulty,
                        temporaries)
from test_fault_signals import _session_members, wait_for_files


def test_the_val_tar_is_built_alongside_with_the_same_result(manual, out, env, tmp_path):
    log = tmp_path / "sides.log"
    r = run_faulty("alongside", manual, out, {**env, "SIDES_LOG": str(log)}, "--json")
    assert r.returncode == 0, r.stderr
    sides = {splits: (pid, int(nice)) for pid, nice, splits in
             (line.split(" ", 2) for line in log.read_text().splitlines())}
    assert set(sides) == {"train val", "test"}, sides
    assert sides["train val"][0] != sides["test"][0]  # two processes
    assert sides["test"][1] == min(19, sides["train val"][1] + pipeline.SIDE_NICENESS)
    assert set(json.loads(r.stdout)["splits"]) == {"train", "val", "test"}
    plain = tmp_path / "plain"
    assert build(manual, plain, env).returncode == 0
    for name in ("train.csv", "val.csv", "test.csv", "ImageNet_LT_test.txt"):
        assert (out / name).read_bytes() == (plain / name).read_bytes(), name
    assert json.loads((out / "ltextract.json").read_text())["splits"] == \
        json.loads((plain / "ltextract.json").read_text())["splits"]
    completes(manual, out, env)  # and verify agrees


def _name_a_missing_image(manual: Path, split: str) -> None:
    path = manual / f"ImageNet_LT_{split}.txt"
    lines = path.read_text().splitlines()
    rel, label = lines[-1].split()
    lines[-1] = f"{rel.rsplit('/', 1)[0]}/missing_{split}.JPEG {label}"
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("split,tar", [("test", "ILSVRC2012_img_val.tar"),
                                       ("train", "ILSVRC2012_img_train.tar")])
def test_a_wrong_tar_on_either_side_is_one_clear_error_at_once(manual, out, env, want, split, tar):
    """The side that finds the problem stops the other (which is slowed here: left to finish,
    it would copy for many seconds), and one line names the problem, not the stop."""
    _name_a_missing_image(manual, split)
    r = run_faulty("alongside,slow:0.5", manual, out, env)
    fails(r, f"missing_{split}.JPEG", tar)
    other = ("test",) if split == "train" else ("train", "val")
    copied = [p for s in other for p in (out / s).glob("*/*") if not p.name.startswith(".")]
    assert len(copied) < sum(1 for rel in want if rel.split("/")[0] in other), "not stopped"
    assert "Traceback" not in r.stderr and "stopped by a signal" not in r.stderr
    assert temporaries(out) == []
    assert_no_partial(out, want)


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"),
                                           (signal.SIGTERM, 143, "terminated")])
def test_signals_to_the_group_stop_both_sides(manual, out, env, want, sig, code, word):
    proc = subprocess.Popen(driver_cmd("alongside,slow:0.05", *build_args(manual, out)),
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
                            start_new_session=True)
    wait_for_files(proc, out, 12)
    assert len(_session_members(proc.pid)) >= 2, "no side process"
    os.killpg(proc.pid, sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stderr.strip() == f"ltextract: {word}; finished files are kept, re-run to complete"
    _gone(proc.pid)
    assert temporaries(out, Path(env["LTEXTRACT_CACHE_DIR"])) == []
    assert_no_partial(out, want)
    completes(manual, out, env)


def test_the_side_dies_with_a_killed_build(manual, out, env, want):
    proc = subprocess.Popen(driver_cmd("alongside,slow:0.05", *build_args(manual, out)),
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
                            start_new_session=True)
    wait_for_files(proc, out, 12)
    proc.kill()
    proc.communicate(timeout=60)
    _gone(proc.pid)
    assert_no_partial(out, want)
    completes(manual, out, env)


def _gone(sid: int) -> None:
    deadline = time.monotonic() + 30
    while _session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_members(sid) == []
