"""The stream strategy: one sequential pass over a tar, copying wanted members as they go by.

Spinning disks and network filesystems serve one long read far better than many seeks, and a
pipe (`-`, stdin) cannot seek at all. The pass walks the same header logic as the index scan
(`tarwalk.iter_groups`) over a forward-only reader, so both strategies find the same members.
`storage.choose` picks seek or stream for a file from its device and filesystem.
"""
from __future__ import annotations

import os
import stat
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Optional

from ltextract.errors import TarError
from ltextract.tar.header import BLOCK, decode_name, printable
from ltextract.tar.truncation import Truncated, skipped_past_end_message, stream_cut_message
from ltextract.tar.walk import OPEN_END, check_head, iter_groups

from ltextract.sources import Job

READ_BUFFER = 1 << 20
IN_FLIGHT_BYTES = 64 << 20  # payloads read but not yet written, at most
IN_FLIGHT_FILES = 4096



class Forward:
    """A forward-only byte stream addressed like a buffer: `s[a:b]` skips to a and reads b - a
    (fewer at the end of input). The latest read can be repeated: the first header is checked
    before the walk starts."""

    def __init__(self, f: BinaryIO, label: str):
        self.f, self.label = f, label
        self.pos = 0
        self.seekable = f.seekable()
        self.scratch = bytearray(0 if self.seekable else READ_BUFFER)
        self.last: tuple[int, bytes] = (-1, b"")
        self.ended = False  # a read came up short: the input is exhausted
        self.skipped_past_end = False  # ... inside bytes it skipped (a pipe's)

    def __getitem__(self, span: slice) -> bytes:
        start, stop = span.start, span.stop
        if start == self.last[0] and stop - start <= len(self.last[1]):
            return self.last[1][:stop - start]
        if start < self.pos:
            raise ValueError(f"{self.label}: read at {start:,} after {self.pos:,}: not forward-only")
        self._skip(start - self.pos)
        data = b"" if self.skipped_past_end else self.f.read(stop - start)
        self.ended = self.ended or len(data) < stop - start
        self.pos = start + len(data)
        self.last = (start, data)
        return data

    def overran(self) -> bool:
        """Whether the input ended inside bytes that were skipped, not at a header: a tar of
        unknown size walked to its end without seeing the cut."""
        if self.seekable:  # a seek past the end of a file succeeds; its size tells
            st = os.fstat(self.f.fileno())
            return stat.S_ISREG(st.st_mode) and self.f.tell() > st.st_size
        return self.skipped_past_end

    def _skip(self, n: int) -> None:
        """Pass over n bytes: a file moves its offset (the kernel still reads ahead in order),
        a pipe reads them into a scratch buffer."""
        if n <= 0:
            return
        if self.seekable:
            self.f.seek(n, os.SEEK_CUR)
            self.pos += n
            return
        while n > 0 and not self.skipped_past_end:
            got = self.f.readinto(memoryview(self.scratch)[:min(n, len(self.scratch))])
            self.skipped_past_end = not got
            self.pos += got
            n -= got


class Cut(TarError):
    """The tar ends early. Raised once every wanted member wholly before the cut is written
    (and yielded): those files are kept, as the seek strategy keeps them."""


Wanted = dict[str, dict[bytes, list]]  # group ("" or "<wnid>.tar") -> member name -> jobs (.offset)
Write = Callable[[object, bytes], object]  # (job, payload) -> result, run in a worker thread


def stream_copy(f: BinaryIO, label: str, nested: bool, wanted: Wanted, write: Write, workers: int,
                size: Optional[int] = None) -> Iterator[object]:
    """Read `f` once from start to end; each wanted member's payload goes to `write(job, data)`
    in a thread pool (hashing and writing overlap the reading). Yields write's results.
    A job's `offset` is where an index located it, or -1: then every copy of the name is
    written, in order, so the last one stays, as with seek.

    `size` is known for a file (`label` is then its path) and None for a pipe. A tar that ends
    early raises `Cut`, after the members before the cut are written; a corrupt one TarError."""
    return copy_members(Forward(f, label), label, nested, wanted, write, workers, size)


def copy_members(src: Forward, label: str, nested: bool, wanted: Wanted, write: Write, workers: int,
                 size: Optional[int] = None) -> Iterator[object]:
    """`stream_copy` over a forward-only byte source."""
    check_head(label, src[0:BLOCK])
    writes = Writes(write, workers)
    seen: set[int] = set()
    group, why = "", ""
    try:
        try:
            for group, _, end, members in iter_groups(src, size or OPEN_END, nested, label):
                by_name = wanted.get(group)
                try:
                    for name, offset, length in members:
                        jobs = by_name.get(name) if by_name else None
                        if not jobs:
                            continue
                        data = src[offset:offset + length]
                        if len(data) < length:
                            raise Truncated(f"{label}: {printable(group)}" if group else label,
                                            offset - BLOCK, offset + length, decode_name(name), end)
                        for job in jobs:
                            if 0 <= job.offset != offset:
                                continue  # the index located another copy of this name (the last one)
                            if id(job) in seen:  # a member stored twice: the later copy must land last
                                yield from writes.drain()
                            seen.add(id(job))
                            yield from writes.submit(job, data)
                except Truncated:
                    if size is None or end <= size:
                        raise
                    # the class tar itself is cut: the outer walk reports where, as the index does
            if size is None and src.overran():
                # the bytes skipped: an unwanted member's data, or any member's zero padding
                why = skipped_past_end_message(label, group)
        except Truncated as t:
            why = stream_cut_message(label, size, t, src.ended)
        yield from writes.drain()
        if why:
            raise Cut(why)
    finally:
        writes.close()


class Writes:
    """`write(job, data)` calls in a thread pool, with at most IN_FLIGHT_BYTES (or
    IN_FLIGHT_FILES) read but not yet written; results come back in submission order."""

    def __init__(self, write: Write, workers: int):
        self.write = write
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ltx-stream")
        self.pending: deque[tuple[Future, int]] = deque()
        self.in_flight = 0

    def submit(self, job: object, data: bytes) -> Iterator[object]:
        """Queue one write; yields the results that are ready (or must be waited for)."""
        pending = self.pending
        pending.append((self.pool.submit(self.write, job, data), len(data)))
        self.in_flight += len(data)
        while pending and (self.in_flight > IN_FLIGHT_BYTES or len(pending) > IN_FLIGHT_FILES
                           or pending[0][0].done()):
            future, n = pending.popleft()
            self.in_flight -= n
            yield future.result()

    def drain(self) -> Iterator[object]:
        while self.pending:
            yield self.pending.popleft()[0].result()
        self.in_flight = 0

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def open_source(path: Optional[Path]) -> BinaryIO:
    """The tar as one buffered sequential stream; None means stdin."""
    if path is None:
        return os.fdopen(os.dup(0), "rb", buffering=READ_BUFFER)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return os.fdopen(fd, "rb", buffering=READ_BUFFER)


def wanted_by_member(jobs: Iterable[Job], nested: bool,
                     names: Optional[Callable[[Job, str], tuple[str, ...]]] = None) -> Wanted:
    """Jobs keyed as a stream meets members: by group ("<wnid>.tar", or "" in a flat tar) and
    name; `names(job, file)`: every name its member may have in a flat tar (a Places365 tar's
    paths, `Source.names_in_tar`), else the bare file name."""
    by_group: Wanted = {}
    for job in jobs:
        file = job.rel.rsplit("/", 1)[1]
        group = by_group.setdefault(f"{job.wnid}.tar" if nested else "", {})
        for name in (file,) if names is None else names(job, file):
            group.setdefault(name.encode("utf-8", "surrogateescape"), []).append(job)
    return by_group
