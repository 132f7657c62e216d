"""Run the ltextract CLI with a fault injected at a named point: `python driver.py SPEC -- ARGS`.

The faults stand in for what the outside world does to a build (a kill at an exact moment, a slow
disk, another process filling the disk) so each test hits the moment it names every time.

SPEC (comma-separated):
  kill:TARGET:N[:after]  SIGKILL this process on the Nth call of TARGET (before it runs, or after)
                         (example_read: the Nth example a shard writer reads, in a tfds or hf build)
  slow:SECONDS           each file copy takes at least this long (a slow disk)
  hold:PATH:N            file copies after the Nth wait while PATH exists (the test removes it
                         to let the build go on): a build still running, whatever the load
  slowscan:SECONDS       each tar header takes this long to read (a slow disk, while indexing);
                         the first one prints SCAN_STARTED on stderr
  parallel               class tars are scanned, and files copied, in worker processes however
                         few there are, a few files per copy task (faults then hit the workers;
                         a kill in a copy worker kills the whole build, as a power cut would)
  alongside              the val tar's splits are built in a process of their own however few
                         files there are; with SIDES_LOG set, each side appends
                         "<pid> <niceness> <splits>" to that file
  fill:PATH:WHEN         another process fills the file system holding PATH (with PATH itself)
                         at WHEN: journal | copy:N | manifest
TARGET is one of the names in TARGETS below.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from typing import Any, Callable

from ltextract import cli, copy, files, pipeline
from ltextract.formats import folders as folders_format
from ltextract.formats import sharded
from ltextract.out import folders as outdir
from ltextract.out import journal, manifest, resume
from ltextract.tar import header as tarheader
from ltextract.tar import index as tarindex
from ltextract.tar import indexfile
from ltextract.tar import walk as tarwalk

SCAN_STARTED = "driver: header scan started"
BUILD = os.getpid()  # the build's own process; copy and scan workers are forked from it


def _die(build: bool = True) -> None:
    """SIGKILL the build (from a copy worker too: the parent first, its workers follow), or,
    with `build` False, only this process (a scan worker the build should survive)."""
    sys.stderr.flush()
    if build and os.getpid() != BUILD:
        os.kill(BUILD, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


class _Count:
    """Calls counted across the build and the workers it forks later (shared memory)."""

    def __init__(self) -> None:
        self.value = multiprocessing.Value("q", 0)

    def next(self) -> int:
        with self.value.get_lock():
            self.value.value += 1
            return self.value.value


def _counted(fn: Callable, n: int, after: bool, when: Callable[..., bool] = lambda *a: True,
             build: bool = True):
    calls = _Count()

    def wrapper(*args: Any, **kw: Any) -> Any:
        if when(*args):
            hit = calls.next() == n
            if hit and not after:
                _die(build)
            result = fn(*args, **kw)
            if hit:
                _die(build)
            return result
        return fn(*args, **kw)
    return wrapper


def _lines_counted(write: Callable, n: int) -> Callable:
    """Journal.write (a batch's lines) that dies before writing the batch holding line N."""
    lines = _Count()

    def wrapper(journal: Any, text: str) -> None:
        with lines.value.get_lock():
            before = lines.value.value
            lines.value.value += text.count("\n")
            hit = before < n <= lines.value.value
        if hit:
            _die()
        write(journal, text)
    return wrapper


class _Os(types.ModuleType):
    """`os` for one module, with some functions replaced."""

    def __init__(self, **overrides: Callable) -> None:
        super().__init__("os")
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _patch_os(module: Any, **overrides: Callable) -> None:
    """Replace functions of `os` as `module` sees it (keeping earlier replacements)."""
    if isinstance(module.os, _Os):
        module.os.__dict__.update(overrides)
    else:
        module.os = _Os(**overrides)


def _half_write(n: int, build: bool = True) -> Callable:
    """os.write that, on the Nth call, writes half of its buffer and then dies (see `_die`)."""
    calls = _Count()

    def write(fd: int, data: Any) -> int:
        if calls.next() == n:
            os.write(fd, bytes(data[: max(1, len(data) // 2)]))
            _die(build)
        return os.write(fd, data)
    return write


def _reads_counted(write_unit: Callable, n: int) -> Callable:
    """A shard writer's `write_unit` whose reads die on the Nth example read, across workers."""
    calls = _Count()

    def wrapper(writer: Any, unit: Any, read: Callable, stopped: Callable) -> Any:
        def counted(job: Any) -> bytes:
            if calls.next() == n:
                _die()
            return read(job)
        return write_unit(writer, unit, counted, stopped)
    return wrapper


def _is_part(src: Any, dst: Any) -> bool:
    return str(src).endswith(outdir.TMP_SUFFIX)


def _every_header_parsed() -> None:
    """Turn off the scan's inlined fast path (no header matches its magic test), so every
    header goes through tarwalk.parse_header, where the faults hook in."""
    tarwalk.GNU_MAGIC = tarwalk.USTAR_MAGIC = b"\xff" * 6


def install(spec: str) -> None:
    for item in spec.split(","):
        kind, _, rest = item.partition(":")
        if kind == "kill":
            target, n, *after = rest.split(":")
            n_ = int(n)
            if target == "parse_header":  # inside the index scan
                _every_header_parsed()
                tarwalk.parse_header = _counted(tarheader.parse_header, n_, bool(after), build=False)
            elif target == "index_save":  # scan done, cache not yet written
                indexfile.save = _counted(indexfile.save, n_, bool(after))
            elif target == "index_rename":  # the cache index written, not yet renamed
                _patch_os(indexfile, replace=_counted(os.replace, n_, bool(after)))
            elif target == "file_write":  # a file half written (temporary, or in a staged split)
                _patch_os(outdir, write=_half_write(n_))
            elif target == "worker_write":  # a copy worker dies halfway through a file
                _patch_os(outdir, write=_half_write(n_, build=False))
            elif target == "file_rename":  # a temporary file whole, not yet renamed
                _patch_os(outdir, replace=_counted(os.replace, n_, bool(after), _is_part))
            elif target == "publish":  # a staged split whole and journaled, not yet renamed
                resume.publish = _counted(resume.publish, n_, bool(after))
            elif target == "journal_add":  # the Nth file whole, not yet journaled
                journal.Journal.add = _counted(journal.Journal.add, n_, bool(after))
                journal.Journal.write = _lines_counted(journal.Journal.write, n_)
            elif target == "example_read":  # a shard (tfds, hf) part written, its Nth example next
                sharded.ShardedWriter.write_unit = _reads_counted(sharded.ShardedWriter.write_unit, n_)
            elif target == "manifest_rename":  # a manifest/list/metadata temp file whole
                _patch_os(files, replace=_counted(os.replace, n_, bool(after)))
            elif target == "write_split":  # files done, manifests not written
                manifest.write_split = _counted(manifest.write_split, n_, bool(after))
            else:
                raise SystemExit(f"unknown kill target {target}")
        elif kind == "slow":
            delay = float(rest)
            write_file = folders_format.write_file

            def slow_copy(*args: Any, _write: Callable = write_file) -> Any:
                time.sleep(delay)
                return _write(*args)
            folders_format.write_file = slow_copy
        elif kind == "hold":
            gate, after = rest.rsplit(":", 1)
            _hold(gate, int(after))
        elif kind == "slowscan":
            delay_ = float(rest)

            started = threading.Event()

            def slow_header(block: bytes) -> Any:
                if not started.is_set():  # tests wait for this line, not for a guessed time
                    started.set()
                    print(SCAN_STARTED, file=sys.stderr, flush=True)
                time.sleep(delay_)
                return tarheader.parse_header(block)
            _every_header_parsed()
            tarwalk.parse_header = slow_header
        elif kind == "parallel":
            tarindex.PARALLEL_MIN_SPANS = 1
            copy.PARALLEL_MIN_FILES = 1
            folders_format.TASK_FILES = 4
        elif kind == "alongside":
            pipeline.SIDE_MIN_FILES = 1
            log = os.environ.get("SIDES_LOG")
            if log:
                build_lists = pipeline.build_lists

                def logged(req: Any, lists: dict, *args: Any, **kw: Any) -> Any:
                    with open(log, "a") as f:
                        f.write(f"{os.getpid()} {os.nice(0)} {' '.join(lists)}\n")
                    return build_lists(req, lists, *args, **kw)
                pipeline.build_lists = logged
        elif kind == "fill":
            path, when = rest.split(":", 1)
            _fill_at(path, when)
        else:
            raise SystemExit(f"unknown fault {item}")


def _hold(gate: str, after: int) -> None:
    """Copies after the `after`th wait while `gate` exists (polled; a signal still interrupts)."""
    write_file = folders_format.write_file
    calls = _Count()

    def held_copy(*args: Any) -> Any:
        if calls.next() > after:
            while os.path.exists(gate):
                time.sleep(0.01)
        return write_file(*args)
    folders_format.write_file = held_copy


def _fill_at(path: str, when: str) -> None:
    """Fill the disk at `when`: "journal" (before a split's journal is started), "copy:N"
    (before the Nth file copy) or "manifest" (before the first manifest is written)."""
    if when in ("journal", "manifest"):
        targets = [(folders_format.FoldersWriter, "record"), (sharded.ShardedWriter, "record")] \
            if when == "journal" else [(manifest, "write_split")]
        for module, name in targets:
            setattr(module, name, _filling(path, getattr(module, name)))
        return
    n = int(when.split(":")[1])
    write_file = folders_format.write_file
    calls = _Count()

    def filling_copy(*args: Any) -> Any:
        if calls.next() == n:
            _fill(path)
        return write_file(*args)
    folders_format.write_file = filling_copy


def _filling(path: str, original: Callable) -> Callable:
    def filling(*args: Any, **kw: Any) -> Any:
        _fill(path)
        return original(*args, **kw)
    return filling


def _fill(path: str) -> None:
    """Another process takes every free byte (after ltextract checked the space)."""
    with open(path, "ab", buffering=0) as f:
        chunk = bytes(1 << 16)
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:  # the last partial chunk too
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


if __name__ == "__main__":
    spec, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: driver.py SPEC -- ARGS"
    # Ctrl-C as at a terminal: a test runner started as a background job of a non-interactive
    # shell (a CI script's `make test &`, say) hands its children SIGINT ignored, and the
    # build would then run on past it, as it should there
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install(spec)
    sys.argv = ["ltextract", *args]
    cli.main()
