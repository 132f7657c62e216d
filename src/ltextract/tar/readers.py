"""Byte readers for the tars: a plain file (pread, or mapped with random-access advice for header
scans), and a tar split into numbered parts (`ILSVRC2012_img_train.tar.001`, `.002`, ...), as
some hubs ship them, read as one archive without concatenating them on disk: an offset into the
whole archive is mapped to (part, offset in part), and reads that straddle a boundary are joined.
"""
from __future__ import annotations

import bisect
import mmap
import os
import re
from pathlib import Path
from typing import Protocol, Union

from ltextract.errors import TarError

_PART = re.compile(r"^(?P<base>.+\.tar)\.(?P<num>\d{3})$")


class ByteReader(Protocol):
    size: int

    def read(self, offset: int, n: int) -> bytes: ...

    def close(self) -> None: ...


def is_first_part(path: Path) -> bool:
    m = _PART.match(path.name)
    return bool(m) and int(m.group("num")) == 1  # type: ignore[union-attr]


def first_part(tar: Path) -> Path:
    """`<tar>.001`, the name a split copy of `tar` starts with."""
    return tar.with_name(tar.name + ".001")


def parts_of(first: Path) -> list[Path]:
    """The parts in order, from `.001` up to the last consecutive number."""
    m = _PART.match(first.name)
    if not m or int(m.group("num")) != 1:
        raise TarError(f"{first} is not the first part of a split tar (<name>.tar.001)")
    base = m.group("base")
    parts = []
    n = 1
    while (p := first.with_name(f"{base}.{n:03d}")).exists():
        parts.append(p)
        n += 1
    later = sorted(q.name for q in first.parent.glob(f"{base}.[0-9][0-9][0-9]")
                   if int(q.name[-3:]) > n)
    if later:
        raise TarError(f"{first.parent / f'{base}.{n:03d}'} is missing (found {later[0]} after it)")
    if not parts:
        raise TarError(f"{first} not found")
    return parts


def stat(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) of a file, or of all parts together (latest mtime) for a split tar."""
    if not is_first_part(path):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    sts = [os.stat(p) for p in parts_of(path)]
    return sum(s.st_size for s in sts), max(s.st_mtime_ns for s in sts)


class PartsReader:
    """pread across the parts; safe to share between threads (no file position is used)."""

    def __init__(self, first: Path):
        self.paths = parts_of(first)
        self.fds: list[int] = []
        try:
            for p in self.paths:
                self.fds.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            self.close()
            raise
        self.starts = [0]
        for fd in self.fds:
            self.starts.append(self.starts[-1] + os.fstat(fd).st_size)
        self.size = self.starts.pop()

    def read(self, offset: int, n: int) -> bytes:
        chunks = []
        i = bisect.bisect_right(self.starts, offset) - 1
        while n > 0 and 0 <= i < len(self.fds):
            chunk = os.pread(self.fds[i], n, offset - self.starts[i])
            if not chunk:
                i += 1
                continue
            chunks.append(chunk)
            offset += len(chunk)
            n -= len(chunk)
            if i + 1 < len(self.starts) and offset >= self.starts[i + 1]:
                i += 1
        return b"".join(chunks)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class FileReader:
    """The same interface over one ordinary file."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self.fd).st_size

    def read(self, offset: int, n: int) -> bytes:
        return os.pread(self.fd, n, offset)

    def close(self) -> None:
        os.close(self.fd)


def open_bytes(path: Path) -> ByteReader:
    return PartsReader(path) if is_first_part(path) else FileReader(path)


class MappedReader:
    """Random-access reads of 512-byte headers without readahead of the payloads between them."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self.map: Union[mmap.mmap, None] = None
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
        if self.size:
            self.map = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
            if hasattr(mmap, "MADV_RANDOM"):
                self.map.madvise(mmap.MADV_RANDOM)

    def release(self, start: int, end: int) -> None:
        """Unmap pages already scanned (they stay in the page cache): touched header pages of a
        mapping count as resident, which would make the scan's RSS grow with the tar."""
        if self.map is not None and hasattr(mmap, "MADV_DONTNEED"):
            first = start - start % mmap.PAGESIZE
            self.map.madvise(mmap.MADV_DONTNEED, first, min(end, self.size) - first)

    def read(self, offset: int, n: int) -> bytes:
        if self.map is not None:
            return self.map[offset:offset + n]
        return os.pread(self.fd, n, offset)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
        os.close(self.fd)


def open_for_scan(path: Path) -> ByteReader:
    """For header scans: a split tar (`.tar.001`, ...) as the one archive its parts make, else
    the file mapped with random-access advice."""
    return PartsReader(path) if is_first_part(path) else MappedReader(path)


class Slices:
    """buf[a:b] over a reader's read(offset, n), for readers with no single mapping (split tars)."""

    def __init__(self, reader: ByteReader):
        self.reader = reader

    def __getitem__(self, span: slice) -> bytes:
        return self.reader.read(span.start, span.stop - span.start)
