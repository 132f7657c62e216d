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
import struct
import sys
import time
import zipfile
import zlib
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Optional, Union

from ltextract.errors import TarError
from ltextract.files import cache_dir
from ltextract.tar import readers
from ltextract.tar.index import ArchiveIndex, Group, Progress, fingerprint, scan

FORMAT = "ltextract-index"
VERSION = 1
Buffer = Union[bytes, memoryview]


def index_path(tar: Path) -> Path:
    real = os.path.realpath(tar)
    key = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return cache_dir() / "index" / f"{Path(real).name}.{key}.ltidx"


def _npy(values: array) -> list[Buffer]:
    """An .npy v1.0 file of uint64 little-endian values: its header, then the array's memory."""
    header = "{'descr': '<u8', 'fortran_order': False, 'shape': (%d,), }" % len(values)
    header += " " * (-(len(header) + 11) % 64) + "\n"
    data = values if sys.byteorder == "little" else _swapped(values)
    return [b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode(),
            memoryview(data).cast("B")]


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
    members = {"meta.json": [json.dumps(meta).encode()], "names.txt": [index.names],
               "offset.npy": _npy(index.offsets), "size.npy": _npy(index.sizes)}
    _remove_dead_temps(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        if sum(len(p) for parts in members.values() for p in parts) < ZIP32_MAX // 2:
            with open(tmp, "wb") as f:
                _write_zip(f, members)
        else:  # past what a zip without zip64 records holds: zipfile writes those (serially)
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
                for name, parts in members.items():
                    with z.open(name, "w", force_zip64=True) as m:
                        m.writelines(parts)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


#: Deflated apart in threads (zlib lets go of the GIL): a piece restarts the 32 KiB window,
#: which costs a few hundred bytes, and the pieces of a member join into one deflate stream.
PIECE = 2 << 20
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
ZIP32_MAX = 0xFFFFFFFF


def _write_zip(f: BinaryIO, members: dict[str, list[Buffer]]) -> None:
    """A zip of deflated members, as zipfile writes it at level 1, but deflated in parallel:
    each piece is flushed to a byte boundary (Z_SYNC_FLUSH) without ending the stream, so the
    pieces concatenate, and an empty final block ends it. Any inflater reads the result.
    Sizes and offsets must stay below 4 GiB (no zip64 records)."""
    pieces = {name: [memoryview(p)[i:i + PIECE] for p in parts for i in range(0, len(p), PIECE)]
              for name, parts in members.items()}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        deflated = {name: [pool.submit(_deflate_piece, p) for p in ps] for name, ps in pieces.items()}
        crcs = {name: pool.submit(_crc32, ps) for name, ps in pieces.items()}
        t = time.localtime()
        dos_time = t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2
        dos_date = (t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday
        central = []
        offset = 0
        for name, futures in deflated.items():
            data = [future.result() for future in futures] + [_FINAL_BLOCK]
            size, packed = sum(len(p) for p in pieces[name]), sum(len(d) for d in data)
            raw = name.encode()
            fields = (20, 0, zipfile.ZIP_DEFLATED, dos_time, dos_date, crcs[name].result(), packed, size,
                      len(raw))
            f.write(_LOCAL.pack(0x04034B50, *fields, 0) + raw)
            f.writelines(data)
            central.append(_CENTRAL.pack(0x02014B50, 20, *fields, 0, 0, 0, 0, 0, offset) + raw)
            offset += _LOCAL.size + len(raw) + packed
    directory = b"".join(central)
    f.write(directory + _END.pack(0x06054B50, 0, 0, len(central), len(central), len(directory),
                                  offset, 0))


_FINAL_BLOCK = b"\x03\x00"  # an empty, final, fixed-Huffman deflate block


def _deflate_piece(piece: Buffer) -> bytes:
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    return z.compress(piece) + z.flush(zlib.Z_SYNC_FLUSH)


def _crc32(pieces: list[Buffer]) -> int:
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    return crc


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


#: What reading a damaged cache file may raise (zipfile and zlib on random bytes raise all of
#: these); any of them means: rebuild it, never trust it.
_DAMAGED = (OSError, KeyError, IndexError, ValueError, TypeError, AttributeError, EOFError,
            NotImplementedError, RuntimeError, RecursionError, zipfile.BadZipFile, zlib.error)


def load(tar: Path, nested: bool) -> Optional[ArchiveIndex]:
    """The cached index of `tar` if it still describes that very file, else None."""
    path = index_path(tar)
    size, mtime_ns = readers.stat(tar)
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json"))
            key = meta["tar"]
            if (meta.get("format"), meta.get("version"), meta.get("nested")) != (FORMAT, VERSION, nested) \
                    or (key["size"], key["mtime_ns"]) != (size, mtime_ns):
                return None
            if key["fingerprint"] != fingerprint(tar):
                return None
            groups = [_group(g) for g in meta["groups"]]
            index = ArchiveIndex(Path(tar), size, mtime_ns, key["fingerprint"], nested,
                                 groups, z.read("names.txt"), _from_npy(z.read("offset.npy")),
                                 _from_npy(z.read("size.npy")), from_cache=True)
    except FileNotFoundError:
        return None
    except _DAMAGED:
        return None  # a damaged cache entry is rebuilt, not trusted
    if index.names.count(b"\n") != index.members or len(index.sizes) != index.members \
            or sum(g.count for g in groups) != index.members:
        return None
    return index


def _group(fields: list) -> Group:
    name, offset, size, count = fields
    if not (isinstance(name, str) and all(type(n) is int and n >= 0 for n in (offset, size, count))):
        raise ValueError("not a group")
    return Group(name, offset, size, count)


def load_or_scan(tar: Path, nested: bool, progress: Progress = None,
                 refresh: bool = False, partial: bool = False) -> ArchiveIndex:
    """The index of `tar`, from the cache when it still matches the file, else by scanning.

    A truncated tar is an error, unless `partial`: then its index holds the members before the
    cut and says why in `cut` (and is not cached: the complete file will replace it)."""
    if not refresh:
        cached = load(tar, nested)
        if cached is not None:
            return cached
    index = scan(tar, nested, progress)
    if index.cut:
        if not partial:
            raise TarError(index.cut)
        return index
    try:
        save(index)
    except OSError as e:
        raise TarError(f"cannot write the index cache {index_path(tar)}: {e.strerror}") from None
    return index
