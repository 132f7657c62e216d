"""OUT apart from the inputs: a build writes into OUT, so an OUT that is, holds or lies inside
something the build reads (a tar, a part of one, a tree, a folder of class tars, the splits dir)
would overwrite the user's own files, or read what it has just written. Checked before anything
is written, by device and inode (a symlink or a bind mount of an input is that input), with
`stat` only: inputs on read-only storage pass."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

from ltextract.errors import LtError

FileId = tuple[int, int]  # (st_dev, st_ino)


def check_apart(out: Path, inputs: Iterable[tuple[str, Path]]) -> None:
    """Refuse an `out` that overlaps any input, each named as (what, path): "train source", ..."""
    out_id = _id(out)
    around = set(_chain(out))  # OUT itself, if it exists, and every folder above it
    for what, path in inputs:
        found = _id(path)
        if found is None:
            continue  # what is missing is reported where it is read
        if found == out_id:
            relation = "is"
        elif found in around:
            relation = "lies inside"
        elif out_id is not None and out_id in _chain(path):
            relation = "contains"
        else:
            continue
        raise LtError(f"output folder {out} {relation} the {what} {path}: choose an --out apart"
                      " from the inputs")


def _id(path: Path) -> Optional[FileId]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _chain(path: Path) -> list[FileId]:
    """`path` and each folder above it, as far as they exist, after resolving symlinks."""
    real = Path(os.path.realpath(path))
    found = (_id(p) for p in (real, *real.parents))
    return [i for i in found if i is not None]
