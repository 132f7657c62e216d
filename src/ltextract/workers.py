"""Forked worker processes for the stages bound by CPU and system calls (header scan, copying).

Threads would take turns on the GIL, which every system call hands over: with several copy
threads, most of a build's kernel time went to passing it (futex wake-ups and context switches).
Forked workers inherit the parent's memory, so a task may close over large state (an index, a
job list) without pickling it; only each item and its result cross a pipe.
"""
from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from ltextract.base import LtError

T = TypeVar("T")
R = TypeVar("R")
PR_SET_PDEATHSIG = 1  # prctl(2), Linux
_task: Optional[Callable] = None  # what `_run` calls: set by fork_map, inherited by its workers


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def fork_map(task: Callable[[T], R], items: Sequence[T], workers: int, what: str) -> Iterator[R]:
    """`task(item)` for each item, in order, computed in `workers` forked processes.

    Closing the iterator early (an error, Ctrl-C) cancels the queued items and waits for the
    ones in flight. A worker that dies (the OOM killer) becomes an LtError naming `what`."""
    global _task
    assert _task is None, "one fork_map at a time: the workers find their task in a global"
    _task = task
    gc.freeze()  # a collection in a worker would touch, and so copy, every inherited object
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_quiet_worker, initargs=(os.getpid(),))
    try:
        with _signals_held():
            results = pool.map(_run, items)
        yield from results
    except BrokenProcessPool:
        raise LtError(f"{what} worker process died (out of memory, or killed)") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _task = None
        gc.unfreeze()


def _run(item: T) -> R:
    assert _task is not None, "runs in a worker forked by fork_map"
    return _task(item)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the pool forks its workers and queues the tasks: raised in
    the middle, they would leave workers waiting for tasks that nobody sends, and the exit
    waiting on them. A worker forked meanwhile only notes such a signal, without a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only change in the main thread, where the CLI runs
        return
    held: list[int] = []
    before = {sig: signal.signal(sig, lambda n, _frame: held.append(n))
              for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])


def _quiet_worker(parent: int) -> None:
    """Ctrl-C, and a batch system's SIGTERM, reach the whole process group: the parent handles
    them (and cancels what is queued); a worker finishes its task. A parent killed outright
    (SIGKILL, the OOM killer) takes its workers with it: they would wait on its pipes forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
