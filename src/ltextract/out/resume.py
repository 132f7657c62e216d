"""Resuming: what a build still has to do in OUT, and putting staged splits in place.

Files whole on disk as their journal says (same size and mtime) are kept; leftover temporary
files go, and so does whatever a staging folder holds that the list does not name. A split
that OUT does not hold yet is staged: written into OUT/.<split>.ltx-part and renamed into place
once (`publish_staged`), so its files need no temporary name each. With --layout lists, the
folder is the lists' top folder (train, val), which several splits may share.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Mapping, Optional

from ltextract.errors import LtError
from ltextract.out import STATE_DIR, TMP_SUFFIX
from ltextract.out.folders import (Folders, ensure_dir, on_disk, publish, staging_name, still_there,
                                   unchanged)
from ltextract.out.journal import Done, read_journal_entries

if TYPE_CHECKING:
    from ltextract.plan import Job

BLOCK_SLACK = 4096  # per-file allowance for filesystem block rounding in the space check


def pending(out: Path, jobs: list[Job], journal: dict[str, Done],
            candidates: Optional[dict[str, Done]] = None, staged: Collection[str] = (),
            look: bool = True, others: Collection[str] = ()) -> tuple[list[Done], list[Job]]:
    """Split jobs into files already whole on disk (journaled, same size and mtime) and the rest.
    A job whose file is in `candidates` (journaled against another source) and passes the same
    test carries that entry as `recheck`: `write_one` then keeps the file if the bytes match.

    Leftover temporary files of an interrupted run are removed on the way, and so is whatever
    a staging folder (`staged` top folders) holds that the list does not name (nor `others`, the
    files of other splits sharing the folder): it would be published. `look=False`: the folders
    were just made, empty.
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
        for rel in present.keys() - {j.rel for j in jobs} - set(others):
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
    #: its top folder did not exist: the split is written in its staging folder, published at the end
    staged: bool = False
    #: the folder of OUT it writes into: the split's own, or (--layout lists) its list's top folder
    #: folder, shared with the other splits whose lists point there
    out_folder: str = ""


def out_folder_of(split: str, jobs: list[Job]) -> str:
    return jobs[0].rel.partition("/")[0] if jobs else split


def prepare(out: Path, jobs: dict[str, list[Job]], identities: dict[str, str],
            partial: Collection[str] = frozenset(), damaged: Mapping[str, Collection[str]] = {},
            recheck: bool = False) -> list[SplitWork]:  # noqa: B006 - read only
    """What each split still needs, after folders are checked and stale files dropped.

    `identities` maps each split to its source's identity (`plan.identity`); splits in
    `partial` (from a truncated tar) hold only some of their files, so none are dropped.
    Files in `damaged` (verify's record) are not kept whatever the journal says; with
    `recheck`, no journaled file is kept unread: each is re-checked against the source.
    Splits sharing a top folder (--layout lists: train and val in OUT/train) are prepared
    together: a file of one is never a stray of another."""
    work: list[SplitWork] = []
    made: list[Path] = []  # staging folders made here: gone again if this fails or is stopped
    out_folders: dict[str, list[str]] = {}
    for split, split_jobs in jobs.items():
        out_folders.setdefault(out_folder_of(split, split_jobs), []).append(split)
    try:
        for out_folder, splits in out_folders.items():
            work += _prepare_out_folder(out, out_folder, {s: jobs[s] for s in splits}, identities,
                                        partial, made, damaged, recheck)
        check_space(out, list({j.rel: j for w in work for j in w.todo}.values()))
    except BaseException:
        for root in made:
            _remove(root)
        raise
    return [w for split in jobs for w in work if w.split == split]


def _prepare_out_folder(out: Path, out_folder: str, jobs: dict[str, list[Job]], identities: dict[str, str],
                        partial: Collection[str], made: list[Path],
                        damaged: Mapping[str, Collection[str]] = {},  # noqa: B006 - read only
                        recheck: bool = False) -> list[SplitWork]:
    """The splits writing into OUT/`top`; a staging folder it is about to make is noted in
    `made` first."""
    staged = not os.path.lexists(out / out_folder)  # a first build of it, or one killed before publishing
    root = out / (staging_name(out_folder) if staged else out_folder)
    if not staged:
        _remove(out / staging_name(out_folder))  # OUT/<out_folder> was made since: start afresh there
    empty = not os.path.lexists(root)  # then nothing in it needs looking at
    if staged and empty:
        made.append(root)
    ensure_dir(root)
    folders = {j.rel.rsplit("/", 1)[0].partition("/")[2] for js in jobs.values() for j in js} - {""}
    if staged and not empty:  # class folders a killed run made for another list would be published
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False) and entry.name not in folders:
                _remove(Path(entry.path))
    for folder in sorted(folders):
        if empty:
            os.mkdir(root / folder)
        else:
            ensure_dir(root / folder)
    in_stage = (out_folder,) if staged else ()
    # files other splits write here, or journaled (--layout lists: a SADE list's are test's)
    shared = set(jobs) != {out_folder}
    siblings = _sibling_journals(out, out_folder, set(jobs)) if shared else {}
    work = []
    for split, split_jobs in jobs.items():
        journaled = read_journal_entries(out, split)
        others = {j.rel for s, js in jobs.items() if s != split for j in js} if shared else set()
        trusted = journaled.trusted(identities[split])
        for identity, files in siblings.items():
            if identity == identities[split]:
                trusted = files | trusted
        candidates = journaled.candidates(identities[split])
        if recheck:
            trusted, candidates = {}, candidates | trusted
        bad = damaged.get(split, ())
        if bad:
            trusted = {rel: d for rel, d in trusted.items() if rel not in bad}
            candidates = {rel: d for rel, d in candidates.items() if rel not in bad}
        kept, todo = pending(out, split_jobs, trusted, candidates, in_stage, look=not empty, others=others)
        if split not in partial:  # whatever source a file came from, this OUT's builds wrote it
            keep = others | {rel for files in siblings.values() for rel in files}
            _drop_unlisted(out, journaled.unconfirmed | journaled.done,
                           {j.rel for j in split_jobs} | keep, in_stage)
        work.append(SplitWork(split, split_jobs, identities[split], kept, todo, staged, out_folder))
    return work


def _sibling_journals(out: Path, out_folder: str, splits: set[str]) -> dict[str, dict[str, Done]]:
    """Files under OUT/`top` that the journals of splits not built now hold, by source identity."""
    found: dict[str, dict[str, Done]] = {}
    for path in sorted((out / STATE_DIR).glob("*.journal")):
        split = path.name[:-len(".journal")]
        if split in splits:
            continue
        journaled = read_journal_entries(out, split)
        files = {rel: d for rel, d in journaled.done.items() if rel.startswith(f"{out_folder}/")}
        if files:
            found.setdefault(journaled.identity, {}).update(files)
    return found


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
    """Rename each staged top folder into place, finished or stopped (its files are kept either
    way). After a stop, files no batch reported are removed first: a worker may have died
    halfway through one, and only journaled files may reach a final path."""
    out_folders: dict[str, list[SplitWork]] = {}
    for w in works:
        if w.staged:
            out_folders.setdefault(w.out_folder or w.split, []).append(w)
    for out_folder, ws in out_folders.items():
        root = out / staging_name(out_folder)
        if not os.path.lexists(root):
            continue  # published already
        if not whole:
            ours = set().union(*(done[w.split] for w in ws))
            for entry in os.scandir(root):
                if entry.is_file(follow_symlinks=False):  # (flat lists: files in the top folder)
                    if f"{out_folder}/{entry.name}" not in ours:
                        _remove(Path(entry.path))
                if not entry.is_dir(follow_symlinks=False):
                    continue
                for inner in os.scandir(entry.path):
                    if f"{out_folder}/{entry.name}/{inner.name}" not in ours:
                        _remove(Path(inner.path))
        publish(out, out_folder)
