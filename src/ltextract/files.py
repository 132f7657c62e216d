"""Writing files whole or not at all, reading back what ltextract wrote, and the cache dir."""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import tempfile
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional, Union

from ltextract.errors import LtError

HASH_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Per-user cache: index files and verified lists; never beside the (often read-only) tars."""
    env = os.environ.get("LTEXTRACT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "ltextract" if xdg else Path.home() / ".cache" / "ltextract"


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Write to a temporary name beside `path`, rename over it only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide outputs from other users
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # e.g. ENOSPC from write(): say where
            e.filename = str(path)
        raise


def _read_umask() -> int:
    """Read once at import, before any thread exists: os.umask can only be read by setting it."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def read_text(path: Path, missing: str) -> str:
    """A text file ltextract wrote, decoded; `missing` is the error when it is absent. Damage
    after the fact (a byte that is not UTF-8) is named by file and line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LtError(missing) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise LtError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x}); the file is damaged"
                      ) from None


def read_json(path: Path, missing: str) -> Any:
    """A JSON file ltextract wrote; `missing` is the error when it is absent."""
    text = read_text(path, missing)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LtError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); the file is damaged") from None
    except (ValueError, RecursionError) as e:  # (numbers past int's digit limit, deep nesting)
        raise LtError(f"{path}: not valid JSON ({type(e).__name__}); the file is damaged") from None


def expect(value: Any, kind: Union[type, tuple[type, ...]], path: Path, what: str) -> Any:
    """`value` read from `path` (at `what`, "splits.train.bytes") is of `kind`, else the one-line
    error a damaged file gets; ints are never bools."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int,))):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise LtError(f"{path}: {what} is not {'an' if names[0] in 'aeiou' else 'a'} {names};"
                      " the file is damaged")
    return value


#: What a column of paths, each between newlines, holds where a path has an empty component;
#: and, where a component starts with a dot (rare: searched for only then), a "." or ".." one
_EMPTY = ("\n\n", "//", "\n/", "/\n")
_DOTS = ("\n./", "\n../", "/./", "/../", "/.\n", "/..\n", "\n.\n", "\n..\n")


def safe_column(paths: list[str], slashes: set[int]) -> bool:
    """`safe_rel` of a whole column at once (a tenth of the time): each path has one of
    `slashes` slashes, none has an empty, "." or ".." component or a NUL."""
    joined = "\n".join(paths).join("\n\n")
    return set(map(str.count, paths, repeat("/"))) <= slashes and "\0" not in joined \
        and not any(u in joined for u in _EMPTY) \
        and not (("/." in joined or "\n." in joined) and any(u in joined for u in _DOTS))


def safe_rel(rel: str, parts: Union[int, set[int]]) -> bool:
    """A path relative to OUT with `parts` components (a count, or a set of allowed counts),
    none empty, "." or "..", and no NUL: safe to open under OUT (what a damaged manifest or
    journal names is checked so)."""
    split = rel.split("/")
    counts = parts if isinstance(parts, set) else {parts}
    return len(split) in counts and "\0" not in rel and not any(p in ("", ".", "..") for p in split)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Creating ~100k long-lived records (a list's entries, a manifest's rows) triggers many
    useless GC passes (a third of the time): none while reading them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def atomic_write(path: Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def sha256_of(fd: int, size: Optional[int] = None) -> str:
    """sha256 of the first `size` bytes of an open file (all of it when None), read by offset
    in chunks: any file hashes in flat memory, and the fd's own position is left alone."""
    h = hashlib.sha256()
    pos = 0
    while size is None or pos < size:
        chunk = os.pread(fd, HASH_CHUNK if size is None else min(HASH_CHUNK, size - pos), pos)
        if not chunk:
            break
        h.update(chunk)
        pos += len(chunk)
    return h.hexdigest()
