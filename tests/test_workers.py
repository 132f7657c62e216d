"""workers.alongside: a function in a forked process beside the caller, its outcome or its
failure brought back, and neither side left running when the other stops."""
from __future__ import annotations

import subprocess
import sys
import textwrap




def test_the_result_comes_back_from_another_process():
    r = _in_a_main_thread("""
        import os
        with workers.alongside(lambda: {"pid": os.getpid()}, "a test") as join:
            print(join()["pid"] != os.getpid())
    """)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


def _in_a_main_thread(code: str) -> subprocess.CompletedProcess:
    """Signals reach only a process's main thread, which a test runner may not give a test."""
    prelude = "import time\nfrom ltextract import workers\nfrom ltextract.errors import LtError\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60)


def test_a_failure_alongside_interrupts_the_caller_at_once():
    """The caller's own work outlasts the run's time limit: only an interruption ends it (no
    clock is read, so a loaded machine cannot make this fail)."""
    r = _in_a_main_thread("""
        def fail():
            raise LtError("the val tar is short")
        try:
            with workers.alongside(fail, "a test"):
                time.sleep(3600)  # the caller's own long work
                print("the caller's work ran to its end")
        except LtError as e:
            print(e)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["the val tar is short"]


def test_a_failure_alongside_is_raised_at_the_join_anyway():
    """Where no signal can interrupt the caller (not the main thread), at the latest."""
    r = _in_a_main_thread("""
        import threading
        def fail():
            raise LtError("the val tar is short")
        def caller():
            for joined in (True, False):
                try:
                    with workers.alongside(fail, "a test") as join:
                        time.sleep(0.2)
                        if joined:
                            join()
                except LtError as e:
                    print(e)
        t = threading.Thread(target=caller)
        t.start()
        t.join()
    """)
    assert r.returncode == 0 and r.stdout.splitlines() == ["the val tar is short"] * 2, r.stderr


def test_the_caller_failing_stops_the_process_alongside():
    r = _in_a_main_thread("""
        import os
        def long_work():  # outlasts the run's time limit: only being stopped ends it
            time.sleep(3600)
        try:
            with workers.alongside(long_work, "a test"):
                time.sleep(0.3)
                raise ValueError("the caller's own error")
        except ValueError as e:
            print(e)
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            print("no child left")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["the caller's own error", "no child left"]


def test_a_bug_alongside_shows_its_traceback():
    r = _in_a_main_thread("""
        with workers.alongside(lambda: {}["missing"], "a test"):
            time.sleep(30)
    """)
    assert r.returncode == 1
    assert "RuntimeError: a test failed:" in r.stderr and "KeyError: 'missing'" in r.stderr


def test_the_niceness_applies_to_the_process_alongside_only():
    r = _in_a_main_thread("""
        import os
        with workers.alongside(lambda: os.nice(0), "a test", nice=5) as join:
            print(join() == min(19, os.nice(0) + 5))
    """)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


def _pid_and(x: int) -> tuple[int, int]:
    import os
    return os.getpid(), x * x


def _exit_now(_: int) -> None:
    import os
    os._exit(1)


def _raise_oserror(_: int) -> None:
    raise FileNotFoundError(2, "No such file or directory", "gone.JPEG")


def test_a_pool_runs_tasks_elsewhere_with_the_data_they_are_given():
    """The workers are forked before the data exists: it crosses with each task."""
    import os

    from ltextract.workers import Pool
    with Pool(2, "a test") as pool:
        results = [pool.submit(_pid_and, n) for n in range(6)]  # (data made after the fork)
        done = [r() for r in results]
    assert [x for _, x in done] == [n * n for n in range(6)]
    assert os.getpid() not in {pid for pid, _ in done}


def test_a_pool_of_one_runs_each_task_here_when_asked():
    import os

    from ltextract.workers import Pool
    ran = []
    with Pool(1, "a test") as pool:
        result = pool.submit(lambda: ran.append(os.getpid()) or 7)
        assert not ran  # not before its result is asked for
        assert result() == 7 and ran == [os.getpid()]


def test_a_pool_worker_dying_or_failing_is_one_clear_error():
    import pytest

    from ltextract.errors import LtError
    from ltextract.workers import Pool
    with Pool(2, "a test") as pool:
        with pytest.raises(FileNotFoundError, match="gone.JPEG"):
            pool.submit(_raise_oserror, 0)()
        with pytest.raises(LtError, match="^a test worker process died"):
            pool.submit(_exit_now, 0)()
