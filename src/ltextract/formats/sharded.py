"""What the formats that pack a split into shard files laid out up front (tfds, hf) share.

Every example's shard and position follow from the list and the sizes in the index before a
byte is read (`plan`), so each shard is one unit of the copy engine, written whole under a
temporary name and renamed: a stop leaves no part of one at a final path. A finished shard is
journaled after a line per example it holds (path, size, 0, the image's sha256), so a re-run
keeps it without reading it back: a shard is kept when its file is as journaled and the journal
holds every example the plan puts in it; the shard line's digest covers those examples' paths and
digests in record order, so a shard written for another list or order is rewritten. A finished
split's shards are listed, for their library, in an index file the subclass writes
(`write_index`: TFDS's dataset_info.json, the Hub's README.md) from every finished split.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Iterator, Optional, TypeVar

from ltextract.errors import LtError, write_error
from ltextract.formats import Problem, Progress, Read, SplitWork, Writer, describe_shards, shard_counts
from ltextract.formats.sharded_check import check_shard, strays
from ltextract.out import TMP_SUFFIX, manifest, repair
from ltextract.out.folders import ensure_dir, place_atomically, unchanged
from ltextract.out.journal import (Batch, Done, Journal, close_all, journal_line, journal_path,
                                   read_journal_entries)
from ltextract.out.manifest import POSITION_COLUMNS, Columns, Row, read_metadata
from ltextract.out.resume import BLOCK_SLACK, check_space
from ltextract.plan import Job

if TYPE_CHECKING:
    from ltextract.workers import Pool
    from ltextract.benchmarks import Benchmark

#: What a shard writer holds at once where records must be written in order (array_record,
#: parquet): images read in the order of their bytes in the source, then written in record order.
WINDOW, WINDOW_FILES = 8 << 20, 4096
#: room for the index files (dataset_info.json, labels, the card), in the free-space check
INDEX_SLACK = 64 << 10
T = TypeVar("T")
#: ltextract's split names -> the names TFDS and the Hub give them (others, SADE's, as they are)
LIBRARY_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def library_split(split: str) -> str:
    return LIBRARY_SPLITS.get(split, split)


def in_order(splits: Iterable[str]) -> list[str]:
    """Train, val, test first (TFDS's and the Hub's order), then any other split by name."""
    names = set(splits)
    return [s for s in LIBRARY_SPLITS if s in names] + sorted(names - LIBRARY_SPLITS.keys())


@dataclass
class Shard:
    rel: str  # relative to OUT
    split: str
    jobs: list[Job]  # in record order


class Stopped(Exception):
    """The build is stopping: the shard in hand is dropped (its temporary file removed)."""


def file_name(job: Job) -> str:
    return job.rel.rpartition("/")[2]


def class_and_file(job: Job) -> str:
    """An example's name where file names repeat across classes (Places365's): `<class>/<file>`."""
    return f"{job.wnid}/{file_name(job)}"


def out_benchmark(out: Path) -> "Benchmark":
    """The benchmark an OUT holds (verify re-derives a recorded split's shards for it)."""
    from ltextract.benchmarks import get
    from ltextract.out.manifest import benchmark_of

    try:
        return get(benchmark_of(read_metadata(out)))
    except LtError:
        return get()


def windows(jobs: list[Job], limit: int = WINDOW, files: int = WINDOW_FILES) -> Iterator[list[Job]]:
    """Consecutive runs of examples holding about `limit` image bytes (at least one each) and at
    most `files` examples."""
    start, held = 0, 0
    for i, job in enumerate(jobs):
        if held and (held + job.size > limit or i - start >= files):
            yield jobs[start:i]
            start, held = i, 0
        held += job.size
    if start < len(jobs):
        yield jobs[start:]


def source_order(jobs: list[Job]) -> list[int]:
    """Positions of `jobs` in the order their bytes lie in their sources."""
    return sorted(range(len(jobs)), key=lambda i: (str(jobs[i].file), jobs[i].offset))


def read_window(jobs: list[Job], read: Read, stopped: Callable[[], bool]) -> list[bytes]:
    """The images of `jobs` in record order, read in the order of their bytes."""
    data = [b""] * len(jobs)
    for i in source_order(jobs):
        if stopped():
            raise Stopped()
        data[i] = read(jobs[i])
    return data


def prefetched(jobs: list[Job], prepare: Callable[[list[Job]], T]) -> Iterator[tuple[list[Job], T]]:
    """`prepare(window)` for each window of `jobs`, the next one in a thread while the caller
    writes this one: reads and hashing overlap the writes (both release the GIL)."""
    runs = list(windows(jobs))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltx-window") as pool:
        ahead = pool.submit(prepare, runs[0]) if runs else None
        for i, run in enumerate(runs):
            assert ahead is not None
            ready = ahead.result()
            ahead = pool.submit(prepare, runs[i + 1]) if i + 1 < len(runs) else None
            yield run, ready


def content_digest(jobs: list[Job], digests: list[bytes]) -> str:
    """What a shard holds: its examples' paths and image sha256s, in record order."""
    h = hashlib.sha256()
    for job, digest in zip(jobs, digests):
        h.update(job.rel.encode("utf-8", "surrogateescape") + b"\0" + digest)
    return h.hexdigest()


def recorded(out: Path, fmt: str) -> dict[str, dict]:
    """The splits ltextract.json records as finished in format `fmt`."""
    try:
        splits = read_metadata(out)["splits"]
    except LtError:
        return {}
    return {s: r for s, r in splits.items() if isinstance(r, dict) and r.get("format") == fmt}


class ShardedWriter(Writer):
    needs_sizes = True

    def __init__(self, out: Path, options) -> None:
        super().__init__(out, options)
        from ltextract.benchmarks import get

        self.benchmark: Benchmark = options.benchmark or get()
        #: each example's name in the library's format: the file name, or where file names repeat
        #: across classes (Places365's), `<class>/<file>`
        self.example_name: Callable[[Job], str] = file_name if self.benchmark.unique_file_names \
            else class_and_file
        self.shards: dict[str, list[Shard]] = {}
        self.by_rel: dict[str, Shard] = {}
        self.kept: dict[str, list[Done]] = {}  # journaled shards still whole, per split
        self.keep_lines: dict[str, list[Done]] = {}  # what the new journal starts with
        self.complete: dict[str, dict] = {}  # finished splits -> their ltextract.json record

    # --- what a format says -------------------------------------------------------------
    @property
    def folder(self) -> str:
        """The shards' folder, relative to OUT."""
        raise NotImplementedError

    def plan(self, split: str, jobs: list[Job]) -> list[Shard]:
        raise NotImplementedError

    def identity(self, source: str) -> str:
        """The journal header: shards made from another source or with other parameters are redone."""
        raise NotImplementedError

    def write_shard(self, fd: int, shard: Shard, read: Read, stopped: Callable[[], bool]) -> list[bytes]:
        """Write the shard into `fd`; returns each example's image sha256, in record order."""
        raise NotImplementedError

    def shard_bytes(self, shard: Shard) -> int:
        """About what the shard's file takes, for the free-space check."""
        raise NotImplementedError

    def owns(self, name: str, split: str) -> bool:
        """Whether `name` in the folder is one of `split`'s shards, of any plan."""
        raise NotImplementedError

    def split_meta(self, split: str, shards: list[Shard]) -> dict:
        """What ltextract.json keeps of a finished split, beyond files, bytes and list."""
        return {"format": self.name, "shards": [{"name": sh.rel, "examples": len(sh.jobs)} for sh in shards]}

    def write_index(self, complete: dict[str, dict]) -> None:
        """The library's own index of the finished splits `complete` (none: there is none)."""
        raise NotImplementedError

    # --- parent, before copying ---------------------------------------------------------
    def begin(self, jobs: dict[str, list[Job]], identities: dict[str, str],
              partial: Collection[str]) -> list[SplitWork]:
        """Keep every journaled shard still whole; the index lists, until each of this run's
        splits is finished again, only the finished splits this run leaves alone."""
        parts = self.folder.split("/")
        for depth in range(1, len(parts) + 1):
            ensure_dir(self.out.joinpath(*parts[:depth]))
        works = [self._begin_split(split, split_jobs, identities[split]) for split, split_jobs in jobs.items()]
        todo = [self.by_rel[rel] for w in works for rel in w.units]
        check_space(self.out, [j for w in works for j in w.todo],
                    sum(self.shard_bytes(sh) + BLOCK_SLACK for sh in todo) + INDEX_SLACK)
        self.complete = {s: r for s, r in recorded(self.out, self.name).items() if s not in jobs}
        self.write_index(self.complete)
        return works

    def _begin_split(self, split: str, jobs: list[Job], source: str) -> SplitWork:
        shards = self.shards[split] = self.plan(split, jobs)
        self.by_rel.update((sh.rel, sh) for sh in shards)
        ident = self.identity(source)
        journaled = read_journal_entries(self.out, split)
        trusted = journaled.trusted(ident)
        damaged = repair.read_damaged(self.out, split) & {sh.rel for sh in shards}
        if damaged:  # (found by verify: rewritten whatever the journal says)
            self.options.notice(f"{split}: rewriting {len(damaged):,} file(s) that verify found damaged")
        if self.options.recheck:  # each shard made again from the source
            trusted = {}
        elif damaged:
            trusted = {rel: d for rel, d in trusted.items() if rel not in damaged}
        planned = {sh.rel for sh in shards}
        ours = journaled.done.keys() | journaled.unconfirmed.keys()
        for entry in os.scandir(self.out / self.folder):  # leftovers of ours; files we did not write stay
            rel = f"{self.folder}/{entry.name}"
            stale = rel in ours and rel not in planned
            if stale or (entry.name.endswith(TMP_SUFFIX) and self.owns(entry.name[1:-len(TMP_SUFFIX)], split)):
                os.unlink(entry.path)
        kept, keep_lines, examples, todo = [], [], [], []
        for sh in shards:
            if self._whole(sh, trusted):
                shard_examples = [trusted[j.rel] for j in sh.jobs]
                kept.append(trusted[sh.rel])
                keep_lines += shard_examples + [trusted[sh.rel]]
                examples += shard_examples
            else:
                todo.append(sh)
        self.kept[split], self.keep_lines[split] = kept, keep_lines
        return SplitWork(split, jobs, ident, examples, [j for sh in todo for j in sh.jobs],
                         units=[sh.rel for sh in todo])

    def _whole(self, shard: Shard, trusted: dict[str, Done]) -> bool:
        done = trusted.get(shard.rel)
        if done is None:
            return False
        try:
            if not unchanged(os.lstat(self.out / shard.rel), done):
                return False
        except FileNotFoundError:
            return False
        entries = [trusted.get(j.rel) for j in shard.jobs]
        if any(e is None or e.size != j.size for e, j in zip(entries, shard.jobs)):
            return False
        try:
            digests = [bytes.fromhex(e.sha256) for e in entries]  # type: ignore[union-attr]
        except ValueError:  # a hand-edited journal
            return False
        return content_digest(shard.jobs, digests) == done.sha256

    def units(self, works: list[SplitWork]) -> list[str]:
        """Shards by name: a worker finds the shard in the plan it inherited (nothing to pickle)."""
        return [rel for w in works for rel in w.units]

    def unit_files(self, unit: str) -> int:  # type: ignore[override]
        return len(self.by_rel[unit].jobs)

    # --- worker -------------------------------------------------------------------------
    def write_unit(self, unit: str, read: Read, stopped: Callable[[], bool]) -> Batch:
        """One shard, whole; returns its journal entry and its images' digests (32 bytes each)."""
        assert self.folders is not None, "open() first"
        shard = self.by_rel[unit]
        digests: list[bytes] = []
        size = 0

        def fill(fd: int) -> None:
            nonlocal size
            digests.extend(self.write_shard(fd, shard, read, stopped))
            size = os.fstat(fd).st_size

        try:
            mtime_ns = place_atomically(self.folders, unit, fill)
        except Stopped:
            return Batch({}, {}, 0)
        done = Done(unit, size, mtime_ns, content_digest(shard.jobs, digests))
        return Batch({}, {}, sum(j.size for j in shard.jobs), {"shard": done, "digests": b"".join(digests)})

    # --- parent, after copying ----------------------------------------------------------
    def record(self, works: list[SplitWork], batches: Iterable[Batch],
               on_whole: Optional[Callable[[SplitWork, dict[str, Done]], None]] = None
               ) -> dict[str, dict[str, Done]]:
        """Journal each shard after its examples (one flush: a kill keeps whole shards only);
        a split whose shards are all in is handed to `on_whole` at once."""
        done = {w.split: {d.rel: d for d in w.kept} for w in works}
        left = {w.split: len(w.units) for w in works}
        by_split = {w.split: w for w in works}
        journals: dict[str, Journal] = {}
        try:
            try:
                for w in works:
                    journals[w.split] = Journal(self.out, w.split, w.identity, self.keep_lines[w.split])
                    repair.repaired(self.out, w.split)  # the new journal trusts none of the damaged
                for w in works:
                    if not left[w.split] and on_whole:
                        on_whole(w, done[w.split])
                for finished in batches:
                    if not finished.extra:  # a shard dropped as the build stops
                        continue
                    sd, raw = finished.extra["shard"], finished.extra["digests"]
                    shard = self.by_rel[sd.rel]
                    examples = [Done(j.rel, j.size, 0, raw[32 * i:32 * i + 32].hex())
                                for i, j in enumerate(shard.jobs)]
                    journal = journals[shard.split]
                    journal.write("".join(map(journal_line, examples)) + journal_line(sd))
                    journal.flush()
                    done[shard.split].update((d.rel, d) for d in examples)
                    left[shard.split] -= 1
                    if not left[shard.split] and on_whole:
                        on_whole(by_split[shard.split], done[shard.split])
            finally:
                close_all(batches, journals.values())
        except OSError as e:  # the journals' own writes; the copy engine words its errors itself
            raise LtError(write_error(journal_path(self.out, works[0].split), e)) from None
        return done

    def finish(self, work: SplitWork, done: dict[str, Done], list_name: str,
               source: dict) -> tuple[list[Row], dict, dict]:
        """The manifest (with each example's shard and position), then the library's index."""
        shards = self.shards[work.split]
        where = {j.rel: (sh.rel, str(i)) for sh in shards for i, j in enumerate(sh.jobs)}
        rows = [Row(j.rel, j.label, j.wnid, j.size, done[j.rel].sha256, *where[j.rel]) for j in work.jobs]
        manifest.write_split(self.out, work.split, rows, shard_columns=POSITION_COLUMNS,
                             class_column=self.options.class_column)
        meta = self.split_meta(work.split, shards)
        self.complete[work.split] = meta
        self.write_index(self.complete)
        return rows, meta, shard_counts(len(shards), len(self.kept[work.split]))

    @staticmethod
    def describe(split: str, record: dict) -> str:
        return describe_shards(split, record, len(record["shards"]), "examples")

    # --- verify -------------------------------------------------------------------------
    @classmethod
    def for_record(cls, out: Path, record: dict) -> ShardedWriter:
        """A writer with the options a recorded split was built with (to re-derive its plan)."""
        raise NotImplementedError

    @classmethod
    def read_shard(cls, path: Path, record: dict) -> Iterator[tuple[str, int, bytes]]:
        """(file name, label, image bytes) of every example, in record order; raises `Damaged`."""
        raise NotImplementedError

    def check_index(self, records: dict[str, dict]) -> list[Problem]:
        """The library's index and other files of the whole dataset, against the records."""
        raise NotImplementedError

    @classmethod
    def index_files(cls) -> set[str]:
        """Files of the shards' folder besides the shards."""
        return set()

    @classmethod
    def check(cls, out: Path, split: str, cols: Columns, record: dict, pool: Pool,
              progress: Progress) -> Iterator[Problem]:
        """The manifest places every example where the plan does; every shard read back holds
        exactly its rows' examples (name, label, image sha256) in order. The split checked
        first also checks what the splits share: the index, and no stray file in the folder."""
        rows = cols.rows()
        records = recorded(out, cls.name)
        writer = cls.for_record(out, record)
        if split == in_order(records)[0]:
            yield from writer.check_index(records)
            yield from strays(out, writer.folder, records, cls.index_files())
        jobs = [Job(split, r.path, r.wnid, r.label, Path(), 0, r.size) for r in rows]
        try:
            plan = writer.plan(split, jobs)
        except LtError as e:
            yield Problem(f"{split}.csv", str(e))
            return
        placed = {j.rel: (sh.rel, str(i)) for sh in plan for i, j in enumerate(sh.jobs)}
        if any(placed[r.path] != (r.shard, r.key) for r in rows) or \
                [{"name": sh.rel, "examples": len(sh.jobs)} for sh in plan] != record.get("shards"):
            yield Problem(f"{split}.csv", "shards or positions differ from the plan of this list")
            return
        by_rel = {r.path: r for r in rows}

        def check(shard: Shard) -> list[Problem]:
            return check_shard(cls.read_shard(out / shard.rel, record), shard.rel,
                               [by_rel[j.rel] for j in shard.jobs], [writer.example_name(j) for j in shard.jobs],
                               progress)

        with ThreadPoolExecutor(max_workers=pool.workers) as threads:
            for problems in threads.map(check, plan):
                yield from problems
