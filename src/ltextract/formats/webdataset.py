"""`--format webdataset`: the split as tar shards `OUT/<split>/<split>-000000.tar`, ... (the
layout: `formats.shards`; where file names repeat across classes, as Places365's, a sample's key
is `<class>/<stem>`), with `OUT/<split>.json` listing them. The plan is a pure function of
the list and the shard size, so a re-run keeps every journaled shard and rewrites only the rest:
those damaged since (verify's record, `out.repair`), and with --recheck those that no longer
hold what the source gives.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, Optional

from ltextract.errors import LtError
from ltextract.files import sha256_of
from ltextract.formats import Problem, Progress, Read, SplitWork, Writer, describe_shards, shard_counts
from ltextract.formats.shards import (FORMAT, Shard, ShardSize, check_shards, identity, plan,
                                      shard_chunks, shard_digests, write_index)
from ltextract.out import TMP_SUFFIX, manifest, repair
from ltextract.out.folders import Folders, disk_sha256, ensure_dir, place_atomically, still_there
from ltextract.out.journal import Batch, Done, Journal, close_all, journal_line, journal_path, read_journal
from ltextract.out.manifest import Columns, Row
from ltextract.out.resume import check_space
from ltextract.plan import Job
from ltextract.workers import Pool


def write_shard(folders: Folders, shard: Shard, read: Read) -> tuple[Done, dict[str, str]]:
    """Write one shard atomically; return it as journal entry and each sample's image sha256."""
    digests: dict[str, str] = {}
    shard_hash = hashlib.sha256()
    written = 0

    def fill(fd: int) -> None:
        nonlocal written
        with open(fd, "wb", closefd=False) as f:
            for chunk in shard_chunks(shard, read, digests):
                shard_hash.update(chunk)
                written += f.write(chunk)

    mtime_ns = place_atomically(folders, shard.rel, fill)
    return Done(shard.rel, written, mtime_ns, shard_hash.hexdigest()), digests


def recheck_shard(folders: Folders, shard: Shard, read: Read, journaled: Done) -> Optional[dict[str, str]]:
    """--recheck: the shard as the source gives it, hashed, not written; its samples' digests
    when the file on disk (still the journaled one) holds exactly those bytes, else None."""
    digests: dict[str, str] = {}
    shard_hash = hashlib.sha256()
    for chunk in shard_chunks(shard, read, digests):
        shard_hash.update(chunk)
    if still_there(folders, journaled) and disk_sha256(folders, shard.rel) == shard_hash.hexdigest():
        return digests
    return None


def _kept_digests(out: Path, shard: Shard, journaled: Done) -> Optional[dict[str, str]]:
    """The image digests of a journaled shard still whole on disk (they go into the manifest);
    None when it no longer holds the bytes its journal hashed, or does not read back as the
    samples it promises (damaged since): it is written again."""
    try:
        fd = os.open(out / shard.rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if sha256_of(fd) != journaled.sha256:
                return None
        finally:
            os.close(fd)
        samples = shard_digests(out / shard.rel)
        return {s.job.rel: samples[s.key]["jpg"].sha256 for s in shard.samples}
    except (KeyError, LtError, OSError, EOFError, tarfile.TarError):
        return None


class WebdatasetWriter(Writer):
    name = FORMAT
    needs_sizes = True  # shards are planned by size
    options_used = ("shard_size",)

    def __init__(self, out: Path, options) -> None:
        super().__init__(out, options)
        self.size: ShardSize = options.shard_size or ShardSize(max_bytes=10**9)
        self.shards: dict[str, list[Shard]] = {}
        self.by_rel: dict[str, Shard] = {}
        self.kept: dict[str, list[Done]] = {}  # journaled shards still whole, per split
        self.rechecks: dict[str, Done] = {}  # --recheck: journaled shards to compare with the source
        self.rechecked: dict[str, int] = {}  # per split, shards a re-check found equal

    def begin(self, jobs: dict[str, list[Job]], identities: dict[str, str],
              partial: Collection[str]) -> list[SplitWork]:
        """Shards are a pure function of the list and the shard size, so a re-run keeps every
        journaled shard still whole and rewrites only the rest (and those verify found damaged;
        with --recheck, it compares each with the source first)."""
        works = []
        for split, split_jobs in jobs.items():
            damaged = repair.read_damaged(self.out, split)
            ensure_dir(self.out / split)
            by_class = self.options.benchmark is not None and not self.options.benchmark.unique_file_names
            shards = self.shards[split] = plan(split, split_jobs, self.size, by_class=by_class)
            self.by_rel.update((sh.rel, sh) for sh in shards)
            ident = identity(identities[split], self.size)
            journal = read_journal(self.out, split, ident)
            names = {sh.rel for sh in shards}
            ours = _written_before(self.out, split)
            for entry in os.scandir(self.out / split):  # leftovers of ours; files we did not write are left
                if entry.name.endswith(TMP_SUFFIX) or (f"{split}/{entry.name}" in ours - names):
                    os.unlink(entry.path)
            kept, todo, digests = [], [], {}
            for sh in shards:
                done = None if sh.rel in damaged else journal.get(sh.rel)
                try:
                    st = os.lstat(self.out / sh.rel)
                except FileNotFoundError:
                    st = None
                whole = done and st and (st.st_size, st.st_mtime_ns) == (done.size, done.mtime_ns)
                if whole and self.options.recheck:
                    self.rechecks[sh.rel] = done  # type: ignore[assignment]
                    todo.append(sh)
                    continue
                found = _kept_digests(self.out, sh, done) if whole else None  # type: ignore[arg-type]
                if done and found is not None:
                    kept.append(done)
                    digests.update(found)
                else:
                    todo.append(sh)
            if damaged & names:
                self.options.notice(f"{split}: rewriting {len(damaged & names):,} file(s) that verify"
                                    " found damaged")
            self.kept[split] = kept
            samples = [Done(j.rel, j.size, 0, digests[j.rel]) for j in split_jobs if j.rel in digests]
            works.append(SplitWork(split, split_jobs, ident, samples,
                                   [s.job for sh in todo for s in sh.samples], units=todo))
        check_space(self.out, [j for w in works for j in w.todo])
        return works

    def units(self, works: list[SplitWork]) -> list[Shard]:
        return [sh for w in works for sh in w.units]

    @staticmethod
    def unit_files(unit: Shard) -> int:
        return len(unit.samples)

    def write_unit(self, unit: Shard, read: Read, stopped: Callable[[], bool]) -> Batch:
        """One shard, written whole (a stop leaves only its temporary file, removed next run);
        one up for re-check is kept as it is when it holds what the source gives."""
        assert self.folders is not None, "open() first"
        split = unit.rel.split("/", 1)[0]
        journaled = self.rechecks.get(unit.rel)
        digests = recheck_shard(self.folders, unit, read, journaled) if journaled else None
        if journaled and digests is not None:
            shard = journaled
        else:
            shard, digests = write_shard(self.folders, unit, read)
        raw = b"".join(bytes.fromhex(digests[s.job.rel]) for s in unit.samples)  # 32 bytes each:
        return Batch({}, {split: journal_line(shard)}, sum(s.job.size for s in unit.samples),  # a
                     {"shard": unit.rel, "digests": raw,  # tenth of the pickling Done records cost
                      "rechecked": shard is journaled})

    def record(self, works: list[SplitWork], batches: Iterable[Batch],
               on_whole: Optional[Callable[[SplitWork, dict[str, Done]], None]] = None
               ) -> dict[str, dict[str, Done]]:
        done = {w.split: {d.rel: d for d in w.kept} for w in works}
        journals = {w.split: Journal(self.out, w.split, w.identity, self.kept[w.split]) for w in works}
        for w in works:
            repair.repaired(self.out, w.split)  # the new journal trusts none of the damaged shards
        try:
            for finished in batches:
                for split, lines in finished.lines.items():
                    journals[split].write(lines)
                    journals[split].flush()  # a killed run keeps every shard finished before it
                if finished.extra:  # a shard: its samples' digests, in shard order
                    shard, raw = self.by_rel[finished.extra["shard"]], finished.extra["digests"]
                    split = shard.rel.split("/", 1)[0]
                    self.rechecked[split] = self.rechecked.get(split, 0) + finished.extra["rechecked"]
                    done[split].update(
                        (s.job.rel, Done(s.job.rel, s.job.size, 0, raw[32 * i:32 * i + 32].hex()))
                        for i, s in enumerate(shard.samples))
        finally:
            close_all(batches, journals.values())
        return done

    @classmethod
    def check(cls, out: Path, split: str, cols: Columns, record: dict, pool: Pool,
              progress: Progress) -> Iterator[Problem]:
        """Every sample read back from its shard (with the stdlib's tar reader)."""
        yield from check_shards(out, split, cols.rows(), pool.workers, progress)

    def finish(self, work: SplitWork, done: dict[str, Done], list_name: str,
               source: dict) -> tuple[list[Row], dict, dict]:
        shards = self.shards[work.split]
        write_index(self.out, work.split, shards)
        where = {s.job.rel: (sh.rel, s.key) for sh in shards for s in sh.samples}
        rows = [Row(j.rel, j.label, j.wnid, j.size, done[j.rel].sha256, *where[j.rel]) for j in work.jobs]
        manifest.write_split(self.out, work.split, rows, class_column=self.options.class_column)
        meta = {"format": FORMAT, "shards": len(shards), "shard_size": str(self.size)}
        return rows, meta, shard_counts(len(shards), len(self.kept[work.split]),
                                        self.rechecked.get(work.split, 0))

    @staticmethod
    def describe(split: str, record: dict) -> str:
        return describe_shards(split, record, record["shards"], "samples")


def _written_before(out: Path, split: str) -> set[str]:
    """Shards any earlier run journaled, whatever its parameters were."""
    try:
        with open(journal_path(out, split), encoding="utf-8", errors="surrogateescape") as f:
            header = f.readline().rstrip("\n")
    except FileNotFoundError:
        return set()
    return set(read_journal(out, split, header))
