"""Forked worker processes for the stages bound by CPU and system calls (header scan, copying).

Threads would take turns on the GIL, which every system call hands over: with several copy
threads, most of a build's kernel time went to passing it (futex wake-ups and context switches).
Forked workers inherit the parent's memory, so a task may close over large state (an index, a
job list) without pickling it; only each item and its result cross a pipe.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

from ltextract.errors import LtError

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


class Pool:
    """Tasks for worker processes forked once, at the first `submit`, that take their data from
    the call (pickled), not from the parent's memory: so the parent can go on reading and
    checking while the workers run what it gave them so far. (`fork_map` forks once its data is
    all in memory, for tasks that close over large state.) `workers`: how many; with 1, or
    where processes cannot fork, each task runs here when its result is asked for."""

    def __init__(self, workers: int, what: str) -> None:
        self.workers = max(1, workers)
        self.what = what
        forked = self.workers > 1 and can_fork()
        self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_quiet_worker,
                                         mp_context=multiprocessing.get_context("fork"),
                                         initargs=(os.getpid(),)) if forked else None

    def submit(self, fn: Callable[..., R], *args: Any) -> Callable[[], R]:
        """Queue `fn(*args)` (a module-level function); returns what waits for its result, or
        raises its error (an LtError, an OSError) here."""
        if self._pool is None:
            return lambda: fn(*args)
        with _signals_held():  # (the first submit forks the workers)
            future = self._pool.submit(fn, *args)

        def result() -> R:
            try:
                return future.result()
            except BrokenProcessPool:
                raise LtError(f"{self.what} worker process died (out of memory, or killed)") from None
        return result

    def close(self) -> None:
        """Cancel what is queued, wait for what runs (an error or Ctrl-C leaves no worker)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    die_with(parent)


def die_with(parent: int) -> None:
    """A forked process dies with `parent` killed outright (it would wait on its pipes forever)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def fork_each(task: Callable[[T], Iterator[R]], items: Sequence[T], workers: int,
              what: str) -> Iterator[R]:
    """Everything `task(item)` yields, for every item, computed in `workers` forked processes
    (each takes the next item when done with one: a process's start-up, such as importing a
    library, is paid once), yielded here as it comes: long tasks (a shard read front to back)
    report as they go, not once at the end.

    A task's error (an LtError, an OSError) is raised here once it comes, and stops the others;
    closing the iterator early (an error, Ctrl-C) stops the running tasks (SIGTERM: each ends
    after the file in hand) and waits for them. A process that dies becomes an LtError naming
    `what`."""
    taken = multiprocessing.Value("q", 0)  # items handed out so far: the queue, shared
    running: dict[Any, int] = {}  # the reading end of each process's pipe -> its pid
    parent = os.getpid()
    gc.freeze()  # a collection in a worker would touch, and so copy, every inherited object
    try:
        for _ in range(max(1, min(workers, len(items)))):
            r, w = multiprocessing.Pipe(duplex=False)
            with _signals_held():
                pid = os.fork()
                if pid == 0:
                    r.close()
                    _each(task, items, taken, w, parent)
            w.close()
            running[r] = pid
        while running:
            for r in multiprocessing.connection.wait(list(running)):
                try:
                    kind, value = r.recv()
                except EOFError:
                    kind, value = "died", None
                if kind == "item":
                    yield value
                    continue
                os.waitpid(running.pop(r), 0)
                r.close()
                if kind != "end":
                    raise _side_error(kind, value, what)
    finally:
        for r, pid in running.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for r, pid in running.items():
            with contextlib.suppress(EOFError, OSError, pickle.UnpicklingError):
                while True:
                    r.recv()  # what it still sends, unread, would block its exit
            os.waitpid(pid, 0)
            r.close()
        gc.unfreeze()


def _each(task: Callable[[Any], Iterator[Any]], items: Sequence[Any], taken: Any, conn: Any,
          parent: int) -> None:
    """A process `fork_each` starts: takes the next item until none is left, and sends
    ("item", x) for each x `task(item)` yields, then its outcome. Never returns."""
    status = 1
    try:
        die_with(parent)
        for sig in (signal.SIGINT, signal.SIGTERM):  # the first stops it; cleanup then runs unbroken
            signal.signal(sig, _stop_once)

        def run() -> None:
            while True:
                with taken.get_lock():
                    i = taken.value
                    taken.value += 1
                if i >= len(items):
                    return
                for x in task(items[i]):
                    conn.send(("item", x))

        answer = _outcome(run)
        conn.send(("end", None) if answer[0] == "ok" else answer)
        status = 0
    finally:
        os._exit(status)


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """fn()'s result or failure, as it crosses a pipe to the parent."""
    try:
        return ("ok", fn())
    except KeyboardInterrupt:
        return ("stopped", None)
    except LtError as e:
        return ("error", str(e))
    except OSError as e:
        return ("oserror", (e.errno, e.strerror, e.filename))
    except Exception:  # a bug: the parent shows it, traceback and all
        return ("crash", traceback.format_exc())


@contextmanager
def alongside(fn: Callable[[], R], what: str, nice: int = 0) -> Iterator[Callable[[], R]]:
    """Run `fn()` in a forked process while the caller goes on; yields `join`, which waits
    for it and returns its result, or raises its error (an LtError, an OSError) here.
    `nice`: its priority below the caller's (nice(2)), for work that can fill in around it.

    Its failure interrupts the caller at once (SIGUSR1, in the main thread; elsewhere it is
    raised at the join), so an error is reported when it happens, not once the caller's own
    work is done; the caller failing or stopped (Ctrl-C, SIGTERM) stops it (SIGTERM) and waits
    for it, so nothing writes once this has returned."""
    outcome: list[tuple[str, Any]] = []

    def join() -> R:
        if not outcome:
            if main:  # its failure is read from the pipe now: a signal would cut the reading short
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            outcome.append(_wait(pid, r))
        kind, value = outcome[0]
        if kind != "ok":
            raise _side_error(kind, value, what)
        return value

    def failed(signum: int, frame: object) -> None:
        """It has failed, and its answer is written: raise that here and now, wherever this is."""
        join()

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGUSR1, failed) if main else None
    # held until the `try` below: raised in the fork's after-fork hooks, it would be lost
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    r, w = os.pipe()
    parent = os.getpid()
    with _signals_held():
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _side(fn, w, parent, nice, main)
    os.close(w)

    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        yield join
        join()  # the caller's work is done: the side's outcome counts even if it was not asked for
    except BaseException:
        if main:
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # it may fail of its own as it stops
        if not outcome:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            outcome.append(_wait(pid, r))
        raise
    finally:
        if main:
            signal.signal(signal.SIGUSR1, previous)
        os.close(r)


def _side(fn: Callable[[], Any], w: int, parent: int, nice: int, interrupt: bool) -> None:
    """The process `alongside` starts: `fn()`, its outcome pickled to the parent, which a failure
    interrupts (SIGUSR1) if it can handle the signal (`interrupt`). Never returns."""
    status = 1
    try:
        die_with(parent)
        for sig in (signal.SIGINT, signal.SIGTERM):  # the first stops it; cleanup then runs unbroken
            signal.signal(sig, _stop_once)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        if nice:
            os.nice(nice)  # its workers, forked later, inherit it
        answer = _outcome(fn)
        data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
        if interrupt and answer[0] not in ("ok", "stopped"):
            os.kill(parent, signal.SIGUSR1)
        status = 0
    finally:
        os._exit(status)


def _stop_once(signum: int, frame: object) -> None:
    # absorbed in Python, not SIG_IGN: one already caught in C (Ctrl-C to the group, then the
    # parent's SIGTERM) would be reported "ignored due to race condition" on stderr
    signal.signal(signal.SIGINT, _absorb)
    signal.signal(signal.SIGTERM, _absorb)
    raise KeyboardInterrupt()


def _absorb(signum: int, frame: object) -> None:
    """A second stop signal: the first one's cleanup runs on."""


def _wait(pid: int, r: int) -> tuple[str, Any]:
    chunks = []
    while chunk := os.read(r, 1 << 20):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    return pickle.loads(b"".join(chunks)) if chunks else ("died", None)


def _side_error(kind: str, value: Any, what: str) -> BaseException:
    if kind == "error":
        return LtError(value)
    if kind == "oserror":
        return OSError(*value)
    if kind == "crash":
        return RuntimeError(f"{what} failed:\n{value}")
    if kind == "stopped":
        return LtError(f"{what} was stopped by a signal; finished files are kept, re-run to complete")
    return LtError(f"{what} process died (out of memory, or killed)")
