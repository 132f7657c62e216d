"""Resuming: what a build still has to do in OUT, and putting staged splits in place.

Files whole on disk as their journal says (same size and mtime) are kept; leftover temporary
files go, and so does whatever a staging folder holds that the list does not name. A split
that OUT does not hold yet is staged: written into OUT/.<split>.ltx-part and renamed into place
once (`publish_staged`), so its files need no temporary name each.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Optional

from ltextract.errors import LtError
from ltextract.out import TMP_SUFFIX
from ltextract.out.folders import (Folders, ensure_dir, on_disk, publish, staging_name, still_there,
                                   unchanged)
from ltextract.out.journal import Done, read_journal_entries

if TYPE_CHECKING:
    from ltextract.plan import Job

BLOCK_SLACK = 4096  # per-file allowance for filesystem block rounding in the space check


def pending(out: Path, jobs: list[Job], journal: dict[str, Done],
            candidates: Optional[dict[str, Done]] = None, staged: Collection[str] = (),
            look: bool = True) -> tuple[list[Done], list[Job]]:
    """Split jobs into files already whole on disk (journaled, same size and mtime) and the rest.
    A job whose file is in `candidates` (journaled against another source) and passes the same
    test carries that entry as `recheck`: `write_one` then keeps the file if the bytes match.

    Leftover temporary files of an interrupted run are removed on the way, and so is whatever
    a staging folder (`staged` splits) holds that the list does not name: it would be published.
    `look=False`: the folders were just made, empty.
    """
    present: dict[str, os.stat_result] = {}
    for folder in sorted({j.rel.rsplit("/", 1)[0] for j in jobs}) if look else ():
        try:
            entries = list(os.scandir(out / on_disk(folder, staged)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name.endswith(TMP_SUFFIX):
                os.unlink(entry.path)
            else:
                present[f"{folder}/{entry.name}"] = entry.stat(follow_symlinks=False)
    if staged and present:
        for rel in present.keys() - {j.rel for j in jobs}:
            os.unlink(out / on_disk(rel, staged))
    kept, todo = [], []
    for job in jobs:
        st, done = present.get(job.rel), journal.get(job.rel)
        if unchanged(st, done, job.size):
            kept.append(done)
        elif unchanged(st, done := (candidates or {}).get(job.rel), job.size):
            todo.append(replace(job, recheck=done))
        else:
            todo.append(job)
    return kept, todo


def check_space(out: Path, todo: list[Job], need: Optional[int] = None) -> None:
    """Re-checked files need no room unless they differ (then one file at a time, replaced).
    `need`: what the files take where they are not one file each (shards: the writer knows)."""
    todo = [j for j in todo if j.recheck is None]
    if need is None:
        need = sum(j.size for j in todo if j.size > 0) + BLOCK_SLACK * len(todo)  # -1: not known yet
    free = shutil.disk_usage(out).free
    if need > free:
        raise LtError(f"not enough free space in {out}: {len(todo):,} files need {_gb(need)},"
                      f" {_gb(free)} is free")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


@dataclass
class SplitWork:
    split: str
    jobs: list[Job]
    identity: str
    kept: list[Done]
    todo: list[Job]
    #: OUT/<split> did not exist: the split is written in its staging folder, published at the end
    staged: bool = False


def prepare(out: Path, jobs: dict[str, list[Job]], identities: dict[str, str],
            partial: Collection[str] = frozenset()) -> list[SplitWork]:
    """What each split still needs, after folders are checked and stale files dropped.

    `identities` maps each split to its source's identity (`plan.identity`); splits in
    `partial` (from a truncated tar) hold only some of their files, so none are dropped."""
    work: list[SplitWork] = []
    made: list[Path] = []  # staging folders made here: gone again if this fails or is stopped
    try:
        for split, split_jobs in jobs.items():
            work.append(_prepare_split(out, split, split_jobs, identities[split], partial, made))
        check_space(out, [j for w in work for j in w.todo])
    except BaseException:
        for root in made:
            _remove(root)
        raise
    return work


def _prepare_split(out: Path, split: str, split_jobs: list[Job], identity: str,
                   partial: Collection[str], made: list[Path]) -> SplitWork:
    """One split of `prepare`; a staging folder it is about to make is noted in `made` first."""
    staged = not os.path.lexists(out / split)  # a first build of it, or one killed before publishing
    root = out / (staging_name(split) if staged else split)
    if not staged:
        _remove(out / staging_name(split))  # OUT/<split> was made since: start afresh there
    empty = not os.path.lexists(root)  # then nothing in it needs looking at
    if staged and empty:
        made.append(root)
    ensure_dir(root)
    wnids = {j.wnid for j in split_jobs}
    if staged and not empty:  # class folders a killed run made for another list would be published
        for entry in os.scandir(root):
            if entry.name not in wnids:
                _remove(Path(entry.path))
    for wnid in sorted(wnids):
        if empty:
            os.mkdir(root / wnid)
        else:
            ensure_dir(root / wnid)
    journaled = read_journal_entries(out, split)
    in_stage = (split,) if staged else ()
    kept, todo = pending(out, split_jobs, journaled.trusted(identity), journaled.candidates(identity),
                         in_stage, look=not empty)
    if split not in partial:  # whatever source a file came from, this OUT's builds wrote it
        _drop_unlisted(out, journaled.unconfirmed | journaled.done, {j.rel for j in split_jobs},
                       in_stage)
    return SplitWork(split, split_jobs, identity, kept, todo, staged)


def _remove(path: Path) -> None:
    """A staging folder's own content, or what a killed run left there (never followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _drop_unlisted(out: Path, journal: dict[str, Done], listed: set[str],
                   staged: Collection[str] = ()) -> None:
    """Files an earlier build wrote for a different list; files we did not write are left."""
    gone = [done for rel, done in journal.items() if rel not in listed]
    if not gone:
        return
    folders = Folders(out, staged)
    try:
        for done in gone:
            if still_there(folders, done):
                folder, name = done.rel.rsplit("/", 1)
                os.unlink(name, dir_fd=folders.fd(folder))
    finally:
        folders.close()


def publish_staged(out: Path, works: list[SplitWork], done: dict[str, dict[str, Done]],
                   whole: bool) -> None:
    """Rename each staged split into place, finished or stopped (its files are kept either way).
    After a stop, files no batch reported are removed first: a worker may have died halfway
    through one, and only journaled files may reach a final path."""
    for w in works:
        if not w.staged or not os.path.lexists(out / staging_name(w.split)):
            continue  # published already
        if not whole:
            root = out / staging_name(w.split)
            ours = done[w.split]
            for folder in os.scandir(root):
                for entry in os.scandir(folder.path) if folder.is_dir(follow_symlinks=False) else ():
                    if f"{w.split}/{folder.name}/{entry.name}" not in ours:
                        _remove(Path(entry.path))
        publish(out, w.split)
