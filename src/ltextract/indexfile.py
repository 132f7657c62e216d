"""The index of a tar on disk: a small zip in the cache dir, so a second build (or verify)
never rescans the tar. Keyed by the tar's real path, size, mtime and a fingerprint of its first
and last 4 KiB; anything that does not match, or does not parse, is rebuilt, never trusted.

A zip (readable by any zip tool; numpy.load reads the arrays) holding
  meta.json   format, version, the tar's path/size/mtime_ns/fingerprint, groups
  names.txt   member names, one per line, in group order
  offset.npy  uint64 little-endian payload offsets (NumPy .npy v1.0)
  size.npy    uint64 little-endian payload sizes
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import zipfile
from array import array
from pathlib import Path
from typing import Optional

from ltextract import multipart
from ltextract.base import TarError, cache_dir
from ltextract.tarindex import ArchiveIndex, Group, Progress, fingerprint, scan

FORMAT = "ltextract-index"
VERSION = 1


def index_path(tar: Path) -> Path:
    real = os.path.realpath(tar)
    key = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return cache_dir() / "index" / f"{Path(real).name}.{key}.ltidx"


def _npy(values: array) -> bytes:
    header = "{'descr': '<u8', 'fortran_order': False, 'shape': (%d,), }" % len(values)
    header += " " * (-(len(header) + 11) % 64) + "\n"
    data = values if sys.byteorder == "little" else _swapped(values)
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data.tobytes()


def _from_npy(blob: bytes) -> array:
    if blob[:6] != b"\x93NUMPY":
        raise ValueError("not an .npy array")
    start = 10 + int.from_bytes(blob[8:10], "little")
    values = array("Q")
    values.frombytes(blob[start:])
    return values if sys.byteorder == "little" else _swapped(values)


def _swapped(values: array) -> array:
    copy = array("Q", values)
    copy.byteswap()
    return copy


def save(index: ArchiveIndex, dest: Optional[Path] = None) -> Path:
    dest = dest or index_path(index.path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT, "version": VERSION,
        "tar": {"path": os.path.realpath(index.path), "size": index.size,
                "mtime_ns": index.mtime_ns, "fingerprint": index.fingerprint},
        "nested": index.nested,
        "groups": [[g.name, g.offset, g.size, g.count] for g in index.groups],
    }
    _remove_dead_temps(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            z.writestr("meta.json", json.dumps(meta))
            z.writestr("names.txt", index.names)
            z.writestr("offset.npy", _npy(index.offsets))
            z.writestr("size.npy", _npy(index.sizes))
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _remove_dead_temps(dest: Path) -> None:
    """Temporary files of index writers that were killed; a live writer's file is left alone."""
    for tmp in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
        pid = tmp.name[len(dest.name) + 2:-4]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True


def load(tar: Path, nested: bool) -> Optional[ArchiveIndex]:
    """The cached index of `tar` if it still describes that very file, else None."""
    path = index_path(tar)
    size, mtime_ns = multipart.stat(tar)
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json"))
            key = meta["tar"]
            if (meta.get("format"), meta.get("version"), meta.get("nested")) != (FORMAT, VERSION, nested) \
                    or (key["size"], key["mtime_ns"]) != (size, mtime_ns):
                return None
            if key["fingerprint"] != fingerprint(tar):
                return None
            groups = [Group(n, o, s, c) for n, o, s, c in meta["groups"]]
            index = ArchiveIndex(Path(tar), size, mtime_ns, key["fingerprint"], nested,
                                 groups, z.read("names.txt"), _from_npy(z.read("offset.npy")),
                                 _from_npy(z.read("size.npy")), from_cache=True)
    except FileNotFoundError:
        return None
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return None  # a damaged cache entry is rebuilt, not trusted
    if index.names.count(b"\n") != index.members or len(index.sizes) != index.members \
            or sum(g.count for g in groups) != index.members:
        return None
    return index


def load_or_scan(tar: Path, nested: bool, progress: Progress = None,
                 refresh: bool = False, partial: bool = False) -> ArchiveIndex:
    """The index of `tar`, from the cache when it still matches the file, else by scanning.

    A truncated tar is an error, unless `partial`: then its index holds the members before the
    cut and says why in `damage` (and is not cached: the complete file will replace it)."""
    if not refresh:
        cached = load(tar, nested)
        if cached is not None:
            return cached
    index = scan(tar, nested, progress)
    if index.damage:
        if not partial:
            raise TarError(index.damage)
        return index
    try:
        save(index)
    except OSError as e:
        raise TarError(f"cannot write the index cache {index_path(tar)}: {e.strerror}") from None
    return index
