"""Copying: map list entries to member bytes, then write each file and journal it.

Files go where `resume` put their split: into a staging folder under their own names, or, in a
split folder that exists already, through a temporary name renamed when complete; either way a
final path never holds partial data. A journal of finished files (path, size, mtime, sha256)
lets a re-run after any interruption keep what is whole and redo the rest. Files journaled
against another source (a cut tar since completed, a pipe) are re-checked: their bytes are still
read, and the file is kept, not rewritten, when they hash the same.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import multiprocessing
import os
from dataclasses import dataclass, replace
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import BinaryIO, Callable, Collection, Iterable, Iterator, Optional

from ltextract import stream
from ltextract.base import LtError, TarError
from ltextract.outdir import (Batch, Done, Folders, Journal, batch, folders_per_process, journal_path,
                              place_atomically, still_there)
from ltextract.resume import SplitWork, publish_staged
from ltextract.workers import can_fork, fork_map
from ltextract.splits import SplitList
from ltextract.tarindex import ArchiveIndex

TASK_FILES = 256  # consecutive files per copy task: few round trips, one or two folders each
PARALLEL_MIN_FILES = 1024  # fewer are copied in-process: forking would cost more than it saves
_WNID_FILE = itemgetter(1, 2)  # an Entry's (wnid, file), its key: made in C


@dataclass(slots=True)  # not frozen: a frozen init costs 4x, and a build makes one per listed file
class Job:
    split: str
    rel: str  # "<split>/<wnid>/<file>", relative to OUT
    wnid: str
    label: int
    tar: Path
    offset: int
    size: int
    #: the file at `rel`, journaled against another source: kept if these bytes hash the same
    recheck: Optional[Done] = None


# --- planning (pure) --------------------------------------------------------------------

def wanted(lists: dict[str, SplitList]) -> dict[str, set[tuple[str, str]]]:
    """(wnid, file) keys each top ("train"/"val") must provide."""
    keys: dict[str, set[tuple[str, str]]] = {}
    for sl in lists.values():
        keys.setdefault(sl.entries[0].top, set()).update(map(_WNID_FILE, sl.entries))
    return keys


def plan_located(lists: dict[str, SplitList], where: dict[str, dict[tuple[str, str], tuple[Path, int, int]]],
                 source_names: dict[str, str], partial: set[str] = frozenset()) -> dict[str, list[Job]]:
    """Jobs from (wnid, file) -> (file holding the bytes, offset, size), whatever the source.
    For a top in `partial` (a truncated tar) the images it lacks are left out, not an error.
    `source_names` name each top's source in that error (with `official_size_hint` for a tar)."""
    jobs: dict[str, list[Job]] = {}
    for split, sl in lists.items():
        top = sl.entries[0].top
        found = where[top].get
        located = [found((e.wnid, e.file)) for e in sl.entries]
        pairs = zip(sl.entries, located)
        if None in located:
            if top not in partial:
                missing = [e for e, at in zip(sl.entries, located) if at is None]
                first = ", ".join(e.path for e in missing[:5])
                raise LtError(f"{len(missing):,} image(s) named by {Path(sl.source).name} are missing from"
                              f" {source_names[top]}: {first}{' …' if len(missing) > 5 else ''}")
            pairs = ((e, at) for e, at in pairs if at is not None)
        jobs[split] = [Job(split, f"{split}/{e.wnid}/{e.file}", e.wnid, e.label, at[0], at[1], at[2])
                       for e, at in pairs]
    return jobs


def plan_unindexed(split: str, sl: SplitList, tar: Path) -> list[Job]:
    """Jobs for a tar read without an index (a stream): where and how big is found on the way."""
    return [Job(split, f"{split}/{e.wnid}/{e.file}", e.wnid, e.label, tar, -1, -1) for e in sl.entries]


def locate(index: ArchiveIndex, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[Path, int, int]]:
    """(wnid, file) -> (tar, offset, size). Nested tars hold class tars named <wnid>.tar; a flat
    tar (val) holds every file at top level, so its wnid comes from the list.

    Each class tar's names go into a dict built in C, and only the wanted keys are looked up in
    Python: a quarter less time than a Python loop over all 1.25M names."""
    if not index.nested:  # a flat tar: one group
        by_group = {"": list(keys)}
    else:
        by_wnid: dict[str, list[tuple[str, str]]] = {}
        for key in keys:  # by wnid first: 1,000 group names made, not one per key
            by_wnid.setdefault(key[0], []).append(key)
        by_group = {f"{wnid}.tar": ks for wnid, ks in by_wnid.items()}
    names = index.names.split(b"\n")
    tar, offsets, sizes = index.path, index.offsets, index.sizes
    found: dict[tuple[str, str], tuple[Path, int, int]] = {}
    first = 0
    for group in index.groups:
        wanted = by_group.get(group.name)
        if wanted:
            end = first + group.count
            at = dict(zip(names[first:end], range(first, end))).get  # the last copy wins, as in tar
            for key in wanted:
                i = at(key[1].encode("utf-8", "surrogateescape"))
                if i is not None:
                    found[key] = (tar, offsets[i], sizes[i])
        first += group.count
    return found


# --- copying ----------------------------------------------------------------------------

def copy_one(src_fd: int, folders: Folders, job: Job) -> Done:
    return write_one(folders, job, os.pread(src_fd, job.size, job.offset))


def write_one(folders: Folders, job: Job, data: bytes) -> Done:
    """Write a job's bytes (however they were read) to its final path atomically; a file up
    for re-check that still holds exactly these bytes is kept as it is (no write, no rename)."""
    if 0 <= job.size != len(data):  # -1: a stream's job, sized as it is read
        raise TarError(f"{job.tar} is truncated: {job.rel} needs bytes up to"
                       f" {job.offset + job.size:,} (was the tar replaced since it was indexed?)")
    digest = hashlib.sha256(data).hexdigest()
    if job.recheck is not None and job.recheck.sha256 == digest and still_there(folders, job.recheck):
        return replace(job.recheck, rechecked=True)

    def fill(fd: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    return Done(job.rel, len(data), place_atomically(folders, job.rel, fill), digest)


Place = Callable[[Folders, Job], Done]
_offset = attrgetter("offset")  # a third of the time a key tuple per job takes


def copy_jobs(out: Path, todo: list[Job], workers: int, progress: Callable[[int], None],
              place: Optional[Place] = None, staged: Collection[str] = ()) -> Iterator[Batch]:
    """Copy in offset order, in tasks of consecutive files spread over forked worker processes
    (several reads in flight, no GIL between them); yields each task's finished files.

    `place` handles sources of many files (trees, class tars): it opens each job's file itself.
    Splits in `staged` are written into their staging folders (`SplitWork.staged`).
    """
    by_tar: dict[Path, list[Job]] = {}
    for job in todo:
        by_tar.setdefault(job.tar, []).append(job)
    ordered = [j for tar in sorted(by_tar, key=str) for j in sorted(by_tar[tar], key=_offset)]
    tasks = [(i, min(i + TASK_FILES, len(ordered))) for i in range(0, len(ordered), TASK_FILES)]
    stop = multiprocessing.Value("b", 0, lock=False)  # shared with the workers: set, they stop
    fds: dict[Path, int] = {}
    folders = Folders(out, staged, folders_per_process())
    for tar in {j.tar for j in todo} if place is None else ():
        fds[tar] = os.open(tar, os.O_RDONLY | os.O_CLOEXEC)
        if hasattr(os, "posix_fadvise"):  # read what is asked, not the neighbours too
            os.posix_fadvise(fds[tar], 0, 0, os.POSIX_FADV_RANDOM)

    def run(task: tuple[int, int]) -> Batch:
        finished = []
        for job in ordered[task[0]:task[1]]:
            if stop.value:
                break
            finished.append(place(folders, job) if place else copy_one(fds[job.tar], folders, job))
        return batch(finished)

    parallel = workers > 1 and len(ordered) >= PARALLEL_MIN_FILES and can_fork()
    results = fork_map(run, tasks, workers, f"{out}: a copy") if parallel else map(run, tasks)
    try:
        for finished in results:
            yield finished
            progress(sum(d.size for ds in finished.done.values() for d in ds))
    except OSError as e:
        raise LtError(write_error(out, e)) from None
    finally:
        stop.value = 1
        if parallel:
            results.close()  # waits for the tasks in flight, which see `stop`
        folders.close()
        for fd in fds.values():
            os.close(fd)


def stream_jobs(out: Path, f: BinaryIO, label: str, nested: bool, todo: list[Job], workers: int,
                progress: Callable[[int], None], size: Optional[int],
                on_cut: Callable[[str], None], staged: Collection[str] = ()) -> Iterator[Batch]:
    """Copy `todo` in one sequential pass over the tar `f` (the stream strategy). A tar that
    ends early ends the copy after the files before the cut; `on_cut` hears why."""
    folders = Folders(out, staged)
    try:
        for d in stream.stream_copy(f, label, nested, stream_wanted(todo, nested),
                                     functools.partial(write_one, folders), workers, size):
            yield batch([d])
            progress(d.size)
    except stream.Cut as e:
        on_cut(str(e))
    except OSError as e:
        raise LtError(write_error(out, e)) from None
    finally:
        folders.close()


def write_error(out: Path, e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return f"disk full while writing {e.filename or out}; free some space and re-run to finish"
    if e.errno == errno.ELOOP:
        return f"{e.filename} is a symlink; ltextract never writes through links (remove it)"
    return f"cannot write {e.filename or out}: {e.strerror}"


# --- a whole build ----------------------------------------------------------------------

def record(out: Path, works: list[SplitWork], copied: Iterable[Batch],
           on_whole: Optional[Callable[[SplitWork, dict[str, Done]], None]] = None,
           ) -> dict[str, dict[str, Done]]:
    """Journal each batch of copied files under their splits, flushed per batch; returns every
    split's finished files (then `check_complete`, unless the tar is known to be cut).

    With `on_whole`, a split whose files are all in is published (if staged) and handed to it at
    once, while the other splits' files copy on: only where no file is copied twice (a stream
    copies a member stored twice twice: last copy wins). The rest are published at the end."""
    done = {w.split: {d.rel: d for d in w.kept} for w in works}
    open_works = {w.split: w for w in works} if on_whole else {}
    journals: dict[str, Journal] = {}

    def settle(split: str) -> None:
        w = open_works.get(split)  # (none without on_whole)
        if w is not None and on_whole is not None and len(done[split]) == len(w.kept) + len(w.todo):
            del open_works[split]
            publish_staged(out, [w], done, True)
            on_whole(w, done[split])

    whole = False
    try:
        try:
            for w in works:
                journals[w.split] = Journal(out, w.split, w.identity, w.kept,
                                            [j.recheck for j in w.todo if j.recheck])
            for split in list(open_works):
                settle(split)  # nothing to copy
            for finished in copied:
                for split, lines in finished.lines.items():
                    journals[split].write(lines)
                    journals[split].flush()
                for split, ds in finished.done.items():
                    done[split].update(zip([d.rel for d in ds], ds))
                for split in [s for s in open_works if s in finished.done]:
                    settle(split)
            whole = True
        finally:
            close = getattr(copied, "close", None)
            if close is not None:
                close()  # its workers stop first: nothing writes into a folder once it is published
            for journal in journals.values():
                journal.close()
    except OSError as e:  # the journals' own writes; copy_jobs words its errors itself
        raise LtError(write_error(journal_path(out, works[0].split), e)) from None
    finally:
        publish_staged(out, works, done, whole)
    return done


def check_complete(works: list[SplitWork], done: dict[str, dict[str, Done]], hint: str = "") -> None:
    """Every listed file of each split is done: the tar held them all. `hint`: the tar's
    `official_size_hint` (a download cut at a member boundary reads as a whole, shorter tar)."""
    for w in works:
        missing = [j.rel.split("/", 1)[1] for j in w.jobs if j.rel not in done[w.split]]
        if missing:
            first = ", ".join(missing[:5])
            raise LtError(f"{len(missing):,} image(s) of the {w.split} list are missing from"
                          f" {w.jobs[0].tar.name}{hint}: {first}{' …' if len(missing) > 5 else ''}")


def stream_wanted(jobs: Iterable[Job], nested: bool) -> dict[str, dict[bytes, list[Job]]]:
    """Jobs keyed as a stream meets members: by group ("<wnid>.tar", or "" in a flat tar) and name."""
    by_group: dict[str, dict[bytes, list[Job]]] = {}
    for job in jobs:
        name = job.rel.split("/", 2)[2].encode("utf-8", "surrogateescape")
        by_group.setdefault(f"{job.wnid}.tar" if nested else "", {}).setdefault(name, []).append(job)
    return by_group
