"""A source's identity, the first line of each journal: files journaled against the same
identity are trusted on a re-run; against another, re-checked (their bytes compared) first."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Optional

from ltextract.tar.index import fingerprint

if TYPE_CHECKING:
    from ltextract.sources import Source
    from ltextract.tar.index import ArchiveIndex


def identity(src: "Source", index: Optional["ArchiveIndex"], link: str) -> str:
    """A tar: its name, size, mtime and a hash of its first and last 4 KiB (with or without an
    index: both strategies journal the same identity); a pipe: none to trust again; a tree or a
    folder of class tars: kind, real path and how files reached OUT (`link`)."""
    own = src.identity()
    if own is not None:  # a set of shards words its own
        return own
    if index is not None:
        return f"{index.path.name} {index.size} {index.mtime_ns} {index.fingerprint}"
    if src.kind == "stdin" or (src.indexed and not src.path.is_file()):
        return f"- {time.time_ns()}"
    if src.indexed:  # a tar streamed without an index
        st = os.stat(src.path)
        return f"{src.path.name} {st.st_size} {st.st_mtime_ns} {fingerprint(src.path)}"
    mode = link if src.linkable else "copy"
    return f"{src.kind} {os.path.realpath(src.path)} link={mode}{src.identity_note}"
