"""The stream strategy: one sequential pass over a tar, copying wanted members as they go by.

Spinning disks and network filesystems serve one long read far better than many seeks, and a
pipe (`-`, stdin) cannot seek at all. The pass walks the same header logic as the index scan
(`tarwalk.iter_groups`) over a forward-only reader, so both strategies find the same members.
`choose` picks seek or stream for a file from its device and filesystem.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

from ltextract.base import TarError
from ltextract.tarheader import BLOCK
from ltextract.tarwalk import OPEN_END, Truncated, check_head, iter_groups

READ_BUFFER = 1 << 20
IN_FLIGHT_BYTES = 64 << 20  # payloads read but not yet written, at most
IN_FLIGHT_FILES = 4096
#: Filesystems reached over a network (or through FUSE): one sequential pass beats seeking.
NETWORK_FS = frozenset(("nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "9p", "ceph", "glusterfs",
                        "lustre", "afs", "davfs", "virtiofs"))


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

    def __getitem__(self, span: slice) -> bytes:
        start, stop = span.start, span.stop
        if start == self.last[0] and stop - start <= len(self.last[1]):
            return self.last[1][:stop - start]
        if start < self.pos:
            raise ValueError(f"{self.label}: read at {start:,} after {self.pos:,}: not forward-only")
        self._skip(start - self.pos)
        data = self.f.read(stop - start)
        self.pos = start + len(data)
        self.last = (start, data)
        return data

    def payload(self, start: int, size: int) -> bytes:
        data = self[start:start + size]
        if len(data) < size:
            raise TarError(f"{self.label} is truncated: input ends at byte {self.pos:,}, inside a"
                           f" member that needs bytes up to {start + size:,}")
        return data

    def _skip(self, n: int) -> None:
        """Pass over n bytes: a file moves its offset (the kernel still reads ahead in order),
        a pipe reads them into a scratch buffer."""
        if n <= 0:
            return
        if self.seekable:
            self.f.seek(n, os.SEEK_CUR)
            self.pos += n
            return
        while n > 0:
            got = self.f.readinto(memoryview(self.scratch)[:min(n, len(self.scratch))])
            if not got:
                raise TarError(f"{self.label} is truncated: input ends at byte {self.pos:,}")
            self.pos += got
            n -= got


Wanted = dict[str, dict[bytes, list]]  # group ("" or "<wnid>.tar") -> member name -> jobs (.offset)
Write = Callable[[object, bytes], object]  # (job, payload) -> result, run in a worker thread


def stream_copy(f: BinaryIO, label: str, nested: bool, wanted: Wanted, write: Write, workers: int,
                size: Optional[int] = None) -> Iterator[object]:
    """Read `f` once from start to end; each wanted member's payload goes to `write(job, data)`
    in a thread pool (hashing and writing overlap the reading). Yields write's results.
    A job's `offset` is where an index located it, or -1: then every copy of the name is
    written, in order, so the last one stays, as with seek."""
    src = Forward(f, label)
    check_head(label, src[0:BLOCK])
    pending: deque[tuple[Future, int]] = deque()
    in_flight = 0
    seen: set[int] = set()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ltx-stream")
    try:
        for group, _, _, members in iter_groups(src, size or OPEN_END, nested, label):
            by_name = wanted.get(group)
            for name, offset, length in members:
                jobs = by_name.get(name) if by_name else None
                if not jobs:
                    continue
                data = src.payload(offset, length)
                for job in jobs:
                    if 0 <= job.offset != offset:
                        continue  # the index located another copy of this name (the last one)
                    if id(job) in seen:  # a member stored twice: the later copy must land last
                        yield from (future.result() for future, _ in _drain(pending))
                        in_flight = 0
                    seen.add(id(job))
                    pending.append((pool.submit(write, job, data), length))
                    in_flight += length
                while pending and (in_flight > IN_FLIGHT_BYTES or len(pending) > IN_FLIGHT_FILES
                                   or pending[0][0].done()):
                    future, n = pending.popleft()
                    in_flight -= n
                    yield future.result()
        yield from (future.result() for future, _ in _drain(pending))
    except Truncated as t:
        raise TarError(f"{t.where}: {t.what} (header at offset {t.header_at:,}) claims bytes up to"
                       f" {t.needs:,}, past the end of its tar: corrupt archive") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _drain(pending: deque) -> Iterator:
    while pending:
        yield pending.popleft()


def open_source(path: Optional[Path]) -> BinaryIO:
    """The tar as one buffered sequential stream; None means stdin."""
    if path is None:
        return os.fdopen(os.dup(0), "rb", buffering=READ_BUFFER)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return os.fdopen(fd, "rb", buffering=READ_BUFFER)


# --- choosing a strategy ----------------------------------------------------------------

def choose(path: Optional[Path]) -> str:
    """"stream" for stdin, network or FUSE filesystems and spinning disks; else "seek"."""
    if path is None:
        return "stream"
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            fstype = mount_fstype(f.read(), os.path.realpath(path))
    except OSError:
        fstype = ""
    return strategy_for(fstype, rotational(path))


def strategy_for(fstype: str, is_rotational: Optional[bool]) -> str:
    if fstype in NETWORK_FS or fstype.startswith("fuse") or is_rotational:
        return "stream"
    return "seek"


def mount_fstype(mounts: str, real_path: str) -> str:
    """Filesystem type of the longest mount point holding `real_path` (/proc/self/mounts text)."""
    best, fstype = -1, ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = _unescape(parts[1])
        inside = point == "/" or real_path == point or real_path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, fstype = len(point), parts[2]
    return fstype


def _unescape(field: str) -> str:
    """Mount points escape space, tab, newline and backslash as octal (\\040)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def is_virtual_disk(sysfs_device: Path) -> bool:
    """virtio and Xen disks report rotational = 1 by default, whatever backs them: not a fact."""
    return any(part.startswith("virtio") for part in sysfs_device.parts) \
        or sysfs_device.name.startswith(("vd", "xvd"))


def rotational(path: Path) -> Optional[bool]:
    """Whether the block device under `path` spins (sysfs); None when it cannot be told,
    as on a virtual disk."""
    st = os.stat(path)
    dev = Path("/sys/dev/block") / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    try:
        real = dev.resolve(strict=True)
    except OSError:
        return None
    if is_virtual_disk(real):
        return None
    for folder in (real, real.parent):  # a partition's queue/ is its disk's
        try:
            return (folder / "queue" / "rotational").read_text().strip() == "1"
        except OSError:
            continue
    return None
