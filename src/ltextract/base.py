"""Things every stage shares: the error type, the 1000 wnids, where caches live, atomic files."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
#: Sizes of the official archives; a different size usually means a truncated download.
OFFICIAL_SIZES = {TRAIN_TAR: 147_897_477_120, VAL_TAR: 6_744_924_160}
HASH_CHUNK = 1 << 20


def official_size_hint(name: str, size: int) -> str:
    """" (the official <name> is N bytes, this file M: an incomplete download?)" when `name` is one
    of the official archives and `size` is not its size, else "": a cut download often ends at a
    member boundary, where nothing in the tar itself shows the cut."""
    official = OFFICIAL_SIZES.get(name)
    if not official or size == official:
        return ""
    return f" (the official {name} is {official:,} bytes, this file {size:,}: an incomplete download?)"


class LtError(Exception):
    """A failure the user can act on: the CLI prints it as one line and exits 1."""


class ListError(LtError):
    """A split list is malformed or does not match its pin."""


class TarError(LtError):
    """A tar is missing, truncated or corrupt."""


class FetchError(LtError):
    """A list could not be downloaded."""


@lru_cache(maxsize=1)
def wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 wnids, sorted: a wnid's position is its label."""
    text = resources.files("ltextract").joinpath("wnids.txt").read_text("ascii")
    return tuple(text.split())


@lru_cache(maxsize=1)
def label_of() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}


def cache_dir() -> Path:
    """Per-user cache: index files and verified lists; never beside the (often read-only) tars."""
    env = os.environ.get("LTEXTRACT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "ltextract" if xdg else Path.home() / ".cache" / "ltextract"


def default_manual_dir() -> Path:
    """Where TFDS users already keep the tars."""
    env = os.environ.get("LTEXTRACT_MANUAL_DIR")
    if env:
        return Path(env)
    return Path.home() / "tensorflow_datasets" / "downloads" / "manual"


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


def read_json(path: Path, missing: str) -> Any:
    """A JSON file ltextract wrote; `missing` is the error when it is absent."""
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise LtError(missing) from None
    except (ValueError, UnicodeDecodeError):
        raise LtError(f"{path} is not valid JSON") from None


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
