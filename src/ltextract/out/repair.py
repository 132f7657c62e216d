"""What `verify` found damaged, kept for the next build to rewrite.

A file whose bytes changed but whose size and mtime did not (a bit flip, an edit that restored
the mtime) passes the journal's test, so a build would keep it. verify never changes an output
file; it records each damaged file (or shard) in OUT/.ltextract/<split>.repair, one OUT-relative
path per line, and the next build takes those out of the journal's trust: it rewrites exactly
them. The record goes once that build has rewritten the split's journal without them (a build
stopped before then finds it again)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ltextract.files import atomic_write, unlink_quietly
from ltextract.out import STATE_DIR
from ltextract.out.journal import writable


def repair_path(out: Path, split: str) -> Path:
    return out / STATE_DIR / f"{split}.repair"


def record(out: Path, found: dict[str, Iterable[str]]) -> None:
    """What verify found for each split it checked (an empty set clears an older record);
    raises OSError where OUT is not writable."""
    for split, rels in found.items():
        lines = "".join(f"{rel}\n" for rel in sorted(set(rels)))
        if lines:
            atomic_write(repair_path(out, split), lines.encode("utf-8", "surrogateescape"))
        else:
            unlink_quietly(repair_path(out, split))


def read_damaged(out: Path, split: str) -> set[str]:
    """The files of `split` verify recorded as damaged; a line that names no file a build writes
    (the record itself damaged) is left out: that file, if any, is then kept or redone as the
    journal says."""
    try:
        with open(repair_path(out, split), "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return set()
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    return {rel for rel in lines if writable(rel)}


def repaired(out: Path, split: str) -> None:
    """The split's journal no longer trusts the recorded files: the record is spent."""
    unlink_quietly(repair_path(out, split))
