"""`--format folders`: OUT/<split>/<wnid>/<file>, each image byte-identical to its source, the
layout torchvision's ImageFolder reads; with the manifest and the list rewritten relative to OUT.

Files go where `out.resume` put their split: into a staging folder under their own names, or, in
a split folder that exists already, through a temporary name renamed when complete; either way a
final path never holds partial data. Each batch of finished files is journaled (path, size,
mtime, sha256), so a re-run after any interruption keeps what is whole and redoes the rest.
Files journaled against another source are re-checked: their bytes are still read, and the file
is kept, not rewritten, when they hash the same.
"""
from __future__ import annotations

from operator import attrgetter
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, Optional

from ltextract.errors import LtError, write_error
from ltextract.formats import Problem, Progress, Read, SplitWork, Writer
from ltextract.formats.folder_check import check_split_folders
from ltextract.formats.links import Placer
from ltextract.out import manifest, repair, resume
from ltextract.out.folders import Folders, folders_per_process, write_file
from ltextract.out.journal import Batch, Done, Journal, batch, close_all, journal_line, journal_path
from ltextract.out.manifest import Columns, Row
from ltextract.plan import Job
from ltextract.workers import Pool

TASK_FILES = 256  # consecutive files per copy task: few round trips, one or two folders each
_order = attrgetter("offset")  # a third of the time a key tuple per job takes


class FoldersWriter(Writer):
    name = "folders"
    keeps_partial = True
    writes_list = True

    def __init__(self, out: Path, options) -> None:
        super().__init__(out, options)
        self.placer: Optional[Placer] = None
        #: a file two splits list at one path (--layout lists: a SADE split's are test's) is
        #: written once, for the first; rel -> the other splits it is theirs too
        self.shared: dict[str, list[str]] = {}

    def begin(self, jobs: dict[str, list[Job]], identities: dict[str, str],
              partial: Collection[str]) -> list[SplitWork]:
        damaged = {split: repair.read_damaged(self.out, split) for split in jobs}
        for split, rels in damaged.items():
            if rels:
                listed = sum(j.rel in rels for j in jobs[split])
                self.options.notice(f"{split}: rewriting {listed:,} file(s) that verify found damaged")
        return resume.prepare(self.out, jobs, identities, partial, damaged, self.options.recheck)

    def units(self, works: list[SplitWork]) -> list[list[Job]]:
        """Runs of TASK_FILES files in the order of their bytes (file by file, by offset)."""
        by_file: dict[Path, list[Job]] = {}
        for job in self.distinct(works):
            by_file.setdefault(job.file, []).append(job)
        ordered = [j for f in sorted(by_file, key=str) for j in sorted(by_file[f], key=_order)]
        return [ordered[i:i + TASK_FILES] for i in range(0, len(ordered), TASK_FILES)]

    def distinct(self, works: list[SplitWork]) -> list[Job]:
        jobs: dict[str, Job] = {}
        self.shared = {}
        for job in (j for w in works for j in w.todo):
            if jobs.setdefault(job.rel, job) is not job:
                self.shared.setdefault(job.rel, []).append(job.split)
        return list(jobs.values())

    def open(self, works: list[SplitWork], threads: bool = False) -> None:
        """`threads`: files come from a stream's thread pool (a few folders open per thread);
        else from one copy worker per process, which keeps every class folder open."""
        staged = [w.out_folder for w in works if w.staged]
        self.folders = Folders(self.out, staged) if threads else \
            Folders(self.out, staged, folders_per_process())
        if self.options.link != "copy" and self.placer is None:
            self.placer = Placer(self.options.link, self.options.notice)

    def write_unit(self, unit: list[Job], read: Read, stopped: Callable[[], bool]) -> Batch:
        folders, place = self.folders, self.placer
        assert folders is not None, "open() first"
        finished = []
        for job in unit:
            if stopped():
                break
            if place is not None and job.offset == 0:  # a whole file: an extracted tree's
                finished.append((job.split, place(folders, job)))  # (a tar's start past a header)
            else:
                finished.append((job.split, write_file(folders, job, read(job), self.options.recheck)))
        return batch(finished)

    def write(self, job: Job, data: bytes) -> Done:
        assert self.folders is not None, "open() first"
        return write_file(self.folders, job, data, self.options.recheck)

    def record(self, works: list[SplitWork], batches: Iterable[Batch],
               on_whole: Optional[Callable[[SplitWork, dict[str, Done]], None]] = None
               ) -> dict[str, dict[str, Done]]:
        """Journal each batch under its splits, flushed per batch; returns every split's finished
        files. With `on_whole`, a split whose files are all in is published (if staged) and handed
        to it at once, while the other splits' files copy on: only where no file is copied twice
        (a stream copies a member stored twice twice: last copy wins). The rest are published at
        the end."""
        out = self.out
        done = {w.split: {d.rel: d for d in w.kept} for w in works}
        open_works = {w.split: w for w in works} if on_whole else {}
        journals: dict[str, Journal] = {}
        shared = self.shared

        def settle(split: str) -> None:
            w = open_works.get(split)  # (none without on_whole)
            if w is not None and on_whole is not None and len(done[split]) == len(w.kept) + len(w.todo):
                del open_works[split]
                together = [o for o in works if o.out_folder == w.out_folder]
                if not any(o.out_folder == w.out_folder for o in open_works.values()):  # its folder's last
                    resume.publish_staged(out, together, done, True)
                on_whole(w, done[split])

        whole = False
        try:
            try:
                for w in works:
                    journals[w.split] = Journal(out, w.split, w.identity, w.kept,
                                                [j.recheck for j in w.todo if j.recheck])
                    repair.repaired(out, w.split)  # the new journal trusts none of the damaged
                for split in list(open_works):
                    settle(split)  # nothing to copy
                for finished in batches:
                    for split, lines in finished.lines.items():
                        journals[split].write(lines)
                        journals[split].flush()
                    for split, ds in finished.done.items():
                        done[split].update(zip([d.rel for d in ds], ds))
                    also = _shared_files(finished, shared) if shared else {}
                    for split, ds in also.items():
                        journals[split].write("".join(map(journal_line, ds)))
                        journals[split].flush()
                        done[split].update(zip([d.rel for d in ds], ds))
                    for split in [s for s in open_works if s in finished.done or s in also]:
                        settle(split)
                whole = True
            finally:
                close_all(batches, journals.values())
        except OSError as e:  # the journals' own writes; the copy engine words its errors itself
            raise LtError(write_error(journal_path(out, works[0].split), e)) from None
        finally:
            resume.publish_staged(out, works, done, whole)
        return done

    def end(self, works: list[SplitWork]) -> None:
        """A split still staged (its copy never started: an earlier source failed) is published
        as it is, with the files an earlier run finished."""
        resume.publish_staged(self.out, works, {w.split: {d.rel: d for d in w.kept} for w in works
                                                if w.staged}, False)

    def finish(self, work: SplitWork, done: dict[str, Done], list_name: str,
               source: dict) -> tuple[list[Row], dict, dict]:
        finished = done.get
        rows = [Row(j.rel, j.label, j.wnid, d.size, d.sha256) for j in work.jobs if (d := finished(j.rel))]
        rechecked = sum(d.rechecked for d in done.values())
        manifest.write_split(self.out, work.split, rows, list_name, class_column=self.options.class_column)
        meta = {"format": self.name, "source": source["source"],
                "link": source["link"]}
        stats = {"copied": len(work.todo) - rechecked, "kept": len(work.kept), "kept_rechecked": rechecked}
        return rows, meta, stats

    @staticmethod
    def describe(split: str, record: dict) -> str:
        """Counts in files, with those a re-check found equal to the source apart."""
        return (f"{split}: {record['files']:,} files, {record['bytes'] / 1e6:,.1f} MB"
                f" (copied {record['copied']:,}, kept {record['kept']:,},"
                f" kept after re-check {record['kept_rechecked']:,}) in {record['seconds']:.1f} s")

    # --- verify ---------------------------------------------------------------------------
    @classmethod
    def check(cls, out: Path, split: str, rows: Columns, record: dict, pool: Pool,
              progress: Progress) -> Iterator[Problem]:
        """Nothing but the manifest's files in the split folder, each of its size and sha256
        (the files go to the pool's workers at once)."""
        out_folders, others = _folders_to_check(out, split, rows)
        return check_split_folders(str(out), split, rows, pool, record.get("link") == "symlink",
                                   progress, out_folders, others)


def _shared_files(finished: Batch, shared: dict[str, list[str]]) -> dict[str, list[Done]]:
    """The files of a batch that other splits list at the same path, by those splits."""
    also: dict[str, list[Done]] = {}
    for ds in finished.done.values():
        for d in ds:
            for split in shared.get(d.rel, ()):
                also.setdefault(split, []).append(d)
    return also


def _folders_to_check(out: Path, split: str, rows: Columns) -> tuple[set[str], set[str]]:
    """The top folders whose strays this split's check reports, and the files other splits list
    there. Its own folder; with --layout lists, the top folders its list points into, checked by
    the first of the splits sharing each (so a stray is reported once)."""
    meta = manifest.read_metadata(out)
    if manifest.layout_of(meta) != "lists":
        return {split}, set()
    sharing = sorted(s for s, rec in meta["splits"].items() if rec.get("format", "folders") == "folders")
    found, others = set(), set()
    for out_folder in sorted({path.partition("/")[0] for path in rows.path}):
        sharers = [s for s in sharing if s != split and _points_into(out, s, out_folder)]
        if not sharers or split < sharers[0]:
            found.add(out_folder)
            others.update(path for s in sharers for path in manifest.read_columns(out, s).path)
    return found, others - set(rows.path)


def _points_into(out: Path, split: str, out_folder: str) -> bool:
    """Whether the split's files lie under OUT/`top` (its manifest's first row says)."""
    try:
        with open(manifest.manifest_path(out, split), encoding="utf-8", errors="replace") as f:
            f.readline()
            return f.readline().partition("/")[0] == out_folder
    except FileNotFoundError:  # verify names the missing manifest when it gets to that split
        return False
