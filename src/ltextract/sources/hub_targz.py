"""The Hub's .tar.gz shards (`train_images_0.tar.gz` … `_4`, `val_images.tar.gz`): flat tars of
`<file>_<wnid>.JPEG`, gzip-compressed. gzip has no random access, so each shard is read in one
sequential pass, the stream strategy's walk over the inflated bytes, several shards at once in
processes of their own (`copy.copy_shards`). A shard has no index: where a file is becomes known
as the pass meets it, and a file no shard holds is reported once every pass is over.

Inflating uses the fastest well-kept library installed: zlib-ng (the `hub` extra; ~1.2x the
stdlib on JPEG data), then isal, then the stdlib's zlib. The tar ends (two zero blocks) before the
gzip trailer does, so after the walk the rest is inflated too: a bad CRC or a cut trailer would
otherwise pass unseen."""
from __future__ import annotations

import importlib
import os
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator, Optional

from ltextract.errors import TarError
from ltextract.sources import Job
from ltextract.sources.hub import TARGZ, HubSource, renamer
from ltextract.sources.stream import Wanted, Writes, wanted_by_member
from ltextract.tar.header import BLOCK, padded
from ltextract.tar.truncation import Truncated, stream_cut_message
from ltextract.tar.walk import check_head, collect_members

INPUT = 1 << 20  # compressed bytes read at a time
OUTPUT = 4 << 20  # inflated bytes made at a time, at most (zero padding inflates ~1000x)
WINDOW = 16 << 20  # inflated bytes scanned at a time, at least
GZIP_MAGIC = b"\x1f\x8b"


def inflate_library() -> ModuleType:
    """zlib-ng, else isal, else the stdlib's zlib: the same `decompressobj` and `error`."""
    for name in ("zlib_ng.zlib_ng", "isal.isal_zlib"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return zlib


class Inflated:
    """A gzip file's inflated bytes, read forward in spans (`span`); a file of several gzip
    members reads as one. Its end is checked: every member's CRC and length, and nothing after
    the last but zeros. A file that ends early reads as ending there, and `cut` says why."""

    def __init__(self, path: Path, label: str, lib: Optional[ModuleType] = None):
        self.lib = lib or inflate_library()
        self.label = label
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        self.f = os.fdopen(fd, "rb", buffering=0)
        self.d = self.lib.decompressobj(31)
        self.buf, self.base = b"", 0  # inflated bytes kept, and the offset of the first
        self.pending = b""  # compressed bytes read but not yet inflated
        self.taken = 0  # compressed bytes read from the file
        self.done = False  # the end of the gzip data, or a cut
        self.cut = ""
        self._check_magic()

    def span(self, start: int, stop: int) -> tuple[bytes, int]:
        """The inflated bytes from offset `start` (those before it are dropped: it never goes
        back) to `stop` or further, or to the end of the data: (bytes, the offset of the first)."""
        while self.base + len(self.buf) < start:  # passed over without being scanned
            self.base += len(self.buf)
            self.buf = self._inflate()
            if not self.buf:
                break
        self.buf, self.base = self.buf[max(0, start - self.base):], max(start, self.base)
        parts, have = [self.buf], self.base + len(self.buf)
        while have < stop:
            out = self._inflate()
            if not out:
                break
            parts.append(out)
            have += len(out)
        self.buf = b"".join(parts) if len(parts) > 1 else parts[0]
        return self.buf, self.base

    def finish(self) -> None:
        """Inflate what is left after the tar (its padding, the gzip trailer): checked, dropped."""
        self.buf = b""
        while self._inflate():
            pass

    def close(self) -> None:
        self.f.close()

    def _check_magic(self) -> None:
        head = self.f.read(INPUT)
        self.taken, self.pending = len(head), head
        if head[:2] != GZIP_MAGIC:
            what = "is empty" if not head else "is a Git LFS pointer, not the file (fetch it)" \
                if head.startswith(b"version https://git-lfs") else "is not gzip data"
            raise TarError(f"{self.label} {what}")

    def _input(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        data = self.f.read(INPUT)
        self.taken += len(data)
        return data

    def _inflate(self) -> bytes:
        """The next inflated bytes; b"" at the end of the data (or at a cut)."""
        while not self.done:
            d = self.d
            if d.eof:
                self.done = not self._next_member()
                continue
            data = d.unconsumed_tail or self._input()
            if not data:
                self.done = True
                self.cut = (f"{self.label} is truncated: its gzip data stops at byte {self.taken:,},"
                            " before the end of the compressed stream (an incomplete download?)")
                return b""
            try:
                out = d.decompress(data, OUTPUT)
            except self.lib.error as e:
                raise TarError(f"{self.label} is corrupt: {e} at compressed byte {self.taken:,}"
                               " (download it again)") from None
            if d.eof:
                self.pending = d.unused_data
            if out:
                return out
        return b""

    def _next_member(self) -> bool:
        """After a gzip member: another one (True), or the end, where only zeros may follow."""
        rest = self._input()
        while 0 < len(rest) < 2 and (more := self._input()):
            rest += more
        if not rest:
            return False
        if rest[:2] == GZIP_MAGIC:
            self.d, self.pending = self.lib.decompressobj(31), rest
            return True
        while not rest.strip(b"\x00"):
            rest = self._input()
            if not rest:
                return False  # zero padding, as tape blocking leaves it
        raise TarError(f"{self.label} is corrupt: bytes that are not gzip data follow the end of"
                       f" its gzip data (near byte {self.taken:,})")


def walk(inflated: Inflated, label: str) -> Iterator[tuple[list[bytes], array, array, bytes, int]]:
    """The tar's regular members, window by window: (names, payload offsets, sizes, the window,
    its offset), offsets relative to the window, every payload whole in it. Each window is
    scanned with the index scan's loop (`collect_members`), about a microsecond a member: the
    Hub's shards hold 250,000 images each. A tar cut short raises `Truncated`."""
    start, stop = 0, WINDOW
    while True:
        buf, base = inflated.span(start, stop)
        if base == 0:
            check_head(label, buf[:BLOCK])
        names: list[bytes] = []
        offsets, sizes = array("q"), array("q")
        try:
            collect_members(buf, start - base, len(buf), label, b"", names, offsets, sizes)
            cut: Optional[Truncated] = None
        except Truncated as t:
            cut = t
        if names:
            yield names, offsets, sizes, buf, base
            start = base + offsets[-1] + padded(sizes[-1])
        end = base + len(buf)
        if inflated.done and end < stop:  # all of it was scanned
            if cut is not None:
                raise Truncated(label, base + cut.header_at, base + cut.needs, cut.what, end,
                                cut.padding)
            return
        # A member runs past the window (or the window ended at a header, or at the tar's end
        # blocks): rescan from the end of the last whole member (a long-name record before the
        # next one is read again), with more bytes.
        stop = max(start + WINDOW, end + WINDOW, base + cut.needs if cut is not None else 0)


@dataclass
class TarGzShardRead:
    """One .tar.gz shard, front to back: every listed file it holds is written."""
    origin: str
    label: str
    shard: Path
    wanted: Wanted  # every job of the origin by file name: which shard holds it is not known

    def run(self, write: Callable[[Job, bytes], object], threads: int) -> Iterator[object]:
        inflated = Inflated(self.shard, self.label)
        writes = Writes(write, threads)
        by_name = self.wanted.get("", {})
        rename = renamer(by_name, self.label)
        seen: set[int] = set()
        try:
            try:
                for names, offsets, sizes, buf, _ in walk(inflated, self.label):
                    for name, offset, size in zip(names, offsets, sizes):
                        jobs = by_name.get(rename(name))
                        for job in jobs or ():
                            if id(job) in seen:  # a member stored twice: the later copy must land last
                                yield from writes.drain()
                            seen.add(id(job))
                            yield from writes.submit(job, buf[offset:offset + size])
                inflated.finish()
            except Truncated as t:
                yield from writes.drain()
                yield inflated.cut or stream_cut_message(self.label, None, t, True)
                return
            yield from writes.drain()
            if inflated.cut:  # the tar is whole, but the gzip trailer (its CRC) is cut
                yield inflated.cut
        finally:
            writes.close()
            inflated.close()


class HubTarGzSource(HubSource):
    kind = TARGZ
    streamable = True
    seekable = False

    def shard_reads(self, jobs: list[Job]) -> list[TarGzShardRead]:
        wanted = wanted_by_member(jobs, nested=False)
        return [TarGzShardRead(self.origin, str(shard), shard, wanted) for shard in self.shards]
