"""Choosing how to read a tar: seek (only the needed bytes, after a header index) or stream (one
sequential pass), from where it lies: stdin, a network or FUSE filesystem, a spinning disk."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ltextract.errors import UsageError
from ltextract.sources import Source

#: Filesystems reached over a network (or through FUSE): one sequential pass beats seeking.
NETWORK_FS = frozenset(("nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "9p", "ceph", "glusterfs",
                        "lustre", "afs", "davfs", "virtiofs"))


STRATEGIES = ("auto", "seek", "stream")


def strategy_of(requested: str, src: Source) -> str:
    """seek or stream for one source; only a tar can be streamed, and stdin can only be."""
    if not src.seekable:
        if requested == "seek":
            what = "- (stdin)" if src.kind == "stdin" else f"{src.path} ({src.kind}: gzip has no random access)"
            raise UsageError(f"{what} cannot seek: use --strategy stream or auto")
        return "stream"
    if not src.streamable:
        return "seek"  # split tars, class tars and trees are read file by file
    return choose(src.path) if requested == "auto" else requested


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
