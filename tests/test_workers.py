"""workers.alongside: a function in a forked process beside the caller, its outcome or its
failure brought back, and neither side left running when the other stops."""
from __future__ import annotations

import os
import time

import pytest

from ltextract import workers
from ltextract.base import LtError


def test_the_result_comes_back_from_another_process():
    with workers.alongside(lambda: {"pid": os.getpid()}, "a test") as join:
        here = os.getpid()
        assert join()["pid"] != here


def test_a_failure_alongside_interrupts_the_caller_at_once():
    def fail():
        raise LtError("the val tar is short")

    started = time.monotonic()
    with pytest.raises(LtError, match="^the val tar is short$"):
        with workers.alongside(fail, "a test"):
            time.sleep(30)  # the caller's own long work
    assert time.monotonic() - started < 10


def test_the_caller_failing_stops_the_process_alongside(tmp_path):
    pid_file = tmp_path / "pid"

    def long_work():
        pid_file.write_text(str(os.getpid()))
        time.sleep(60)

    started = time.monotonic()
    with pytest.raises(ValueError, match="the caller's own error"):
        with workers.alongside(long_work, "a test"):
            while not pid_file.exists() or not pid_file.read_text():
                time.sleep(0.01)
            raise ValueError("the caller's own error")
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):  # stopped and waited for, not left running
        os.kill(int(pid_file.read_text()), 0)


def test_a_bug_alongside_shows_its_traceback():
    def buggy():
        return {}["missing"]

    with pytest.raises(RuntimeError, match="(?s)a test failed:.*KeyError: 'missing'"):
        with workers.alongside(buggy, "a test") as join:
            time.sleep(30)
            join()


def test_the_niceness_applies_to_the_process_alongside_only():
    with workers.alongside(lambda: os.nice(0), "a test", nice=5) as join:
        assert join() == min(19, os.nice(0) + 5)
