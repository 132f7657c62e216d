"""The Hub's .tar.gz shards (`train_images_0.tar.gz` … `_4`, `val_images.tar.gz`): flat tars of
`<file>_<wnid>.JPEG`, gzip-compressed. gzip has no random access, so each shard is read in one
sequential pass, the stream strategy's walk over the inflated bytes, several shards at once in
processes of their own (`copy.copy_passes`). A shard has no index: where a file is becomes known
as the pass meets it, and a file no shard holds is reported once every pass is over.

Inflating uses the fastest well-kept library installed: zlib-ng (the `hub` extra; ~1.2x the
stdlib on JPEG data), then isal, then the stdlib's zlib. The tar ends (two zero blocks) before the
gzip trailer does, so after the walk the rest is inflated too: a bad CRC or a cut trailer would
otherwise pass unseen."""
from __future__ import annotations

import importlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator, Optional

from ltextract.errors import TarError
from ltextract.sources import Job
from ltextract.sources.hub import TARGZ, HubSource, renamer
from ltextract.sources.stream import Cut, Forward, Wanted, copy_members, wanted_by_member

INPUT = 1 << 20  # compressed bytes read at a time
OUTPUT = 4 << 20  # inflated bytes made at a time, at most (zero padding inflates ~1000x)
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
    """A gzip file's inflated bytes, read forward (`read`, `skip`); a file of several gzip
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
        self.buf, self.at = b"", 0  # inflated bytes, and how many of them were read
        self.pending = b""  # compressed bytes read but not yet inflated
        self.taken = 0  # compressed bytes read from the file
        self.done = False  # the end of the gzip data, or a cut
        self.cut = ""
        self._check_magic()

    def seekable(self) -> bool:
        return False

    def read(self, n: int) -> bytes:
        while len(self.buf) - self.at < n and self._fill():
            pass
        data = self.buf[self.at:self.at + n]
        self.at += len(data)
        return data

    def skip(self, n: int) -> int:
        """Pass over n bytes; returns how many there were."""
        left = n
        while len(self.buf) - self.at < left:
            left -= len(self.buf) - self.at
            self.buf, self.at = b"", 0
            if not self._fill():
                return n - left
        self.at += left
        return n

    def finish(self) -> None:
        """Inflate what is left after the tar (its padding, the gzip trailer): checked, dropped."""
        while self._fill():
            self.buf, self.at = b"", 0

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

    def _fill(self) -> bool:
        """Inflate more onto the buffer; False at the end of the data (or at a cut)."""
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
                return False
            try:
                out = d.decompress(data, OUTPUT)
            except self.lib.error as e:
                raise TarError(f"{self.label} is corrupt: {e} at compressed byte {self.taken:,}"
                               " (download it again)") from None
            if d.eof:
                self.pending = d.unused_data
            if out:
                self.buf = self.buf[self.at:] + out
                self.at = 0
                return True
        return False

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


class InflatedForward(Forward):
    """The tar walk's forward-only view of a shard's inflated bytes."""

    def _skip(self, n: int) -> None:
        if n > 0 and not self.skipped_past_end:
            got = self.f.skip(n)
            self.pos += got
            self.skipped_past_end = got < n


@dataclass
class TarGzPass:
    """One .tar.gz shard, front to back: every listed file it holds is written."""
    origin: str
    label: str
    shard: Path
    wanted: Wanted  # every job of the origin by file name: which shard holds it is not known

    def run(self, write: Callable[[Job, bytes], object], threads: int) -> Iterator[object]:
        inflated = Inflated(self.shard, self.label)
        try:
            src = InflatedForward(inflated, self.label)  # type: ignore[arg-type]
            try:
                yield from copy_members(src, self.label, False, self.wanted, write, threads,
                                        rename=renamer(self.wanted.get("", {}), self.label))
                inflated.finish()
            except Cut as e:
                yield inflated.cut or str(e)
                return
            if inflated.cut:  # the tar is whole, but the gzip trailer (its CRC) is cut
                yield inflated.cut
        finally:
            inflated.close()


class HubTarGzSource(HubSource):
    kind = TARGZ
    streamable = True
    seekable = False

    def passes(self, jobs: list[Job]) -> list[TarGzPass]:
        wanted = wanted_by_member(jobs, nested=False)
        return [TarGzPass(self.origin, str(shard), shard, wanted) for shard in self.shards]
