"""A re-run with nothing to do, told at the cost of a stat per file.

A build of an OUT that an earlier build finished reads the lists, loads the tar indexes, plans
every job and compares each with the journal, to find that every file is kept: several times
the time of stating the files. When every requested split was last finished from the very list
(same bytes, same place) and the very tars (same identity) now asked for, its journal names
exactly the listed files, and each of them is still the regular file of the size and mtime it
journaled, the full plan would keep every file and rewrite nothing: that is all this checks.
Anything else, or any doubt (a leftover temporary file, a repair record, --recheck, a source
other than a plain tar, whose identity does not cover its content, --layout lists, where splits
share folders), is left to the full build.
"""
from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol

from ltextract.benchmarks.load import custom_warning, local_list
from ltextract.out import TMP_SUFFIX
from ltextract.out.folders import staging_name
from ltextract.benchmarks import Benchmark
from ltextract.out.journal import journal_fields, read_journal_text
from ltextract.out.manifest import METADATA, benchmark_of, layout_of, read_metadata, unchanged_since_written
from ltextract.out.repair import repair_path
from ltextract.plan.identity import identity
from ltextract.sources import Source
from ltextract.workers import can_fork, fork_map


class Request(Protocol):
    """What of a `pipeline.BuildRequest` this looks at."""
    out: Path
    benchmark: Benchmark
    splits: tuple[str, ...]
    splits_dir: Optional[Path]
    split_urls: Mapping[str, str]
    sources: dict[str, Source]
    fmt: str
    link: str
    workers: int
    recheck: bool
    layout: str

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def nothing_to_do(req: Request, warn: Callable[[str], None]) -> Optional[dict[str, dict[str, Any]]]:
    """Each requested split's summary record when the build has nothing to do, else None."""
    if req.recheck or req.fmt != "folders" or req.layout != "splits" or req.split_urls \
            or not (req.out / METADATA).is_file():
        return None
    if any(src.kind != "tar" for src in req.sources.values()):
        return None
    started = time.monotonic()
    meta = read_metadata(req.out)
    if (benchmark_of(meta), layout_of(meta)) != (req.benchmark.name, req.layout):
        return None
    built = meta["splits"]
    identities = {o: identity(src, None, req.link) for o, src in req.sources.items()}
    records, warnings = {}, []
    files: list[Files] = []
    for split in req.splits:
        spec, record = req.benchmark.split(split), built.get(split)
        found = local_list(spec, req.splits_dir)
        if record is None or found is None:
            return None
        data, source, short = found
        digest = hashlib.sha256(data).hexdigest()
        listed = record.get("list", {})
        if (record.get("format"), record.get("source"), record.get("link")) != ("folders", "tar", "copy") \
                or (listed.get("sha256"), listed.get("source")) != (digest, source) \
                or not ("files" in record and "bytes" in record):  # (a record a build writes)
            return None
        journaled = _journaled(req.out, split, spec.origin, data, identities[spec.origin])
        if journaled is None:
            return None
        files.append(journaled)
        if not listed.get("published"):
            warnings.append(custom_warning(short, digest))
        records[split] = {"copied": 0, "kept": record["files"], "kept_rechecked": 0, "list": listed,
                          **{k: record[k] for k in ("files", "bytes", "format", "source", "link")}}
    if not _unchanged(str(req.out), files, req.workers):
        return None
    for message in warnings:
        warn(message)
    for record in records.values():
        record["seconds"] = round(time.monotonic() - started, 3)
    return records


Files = tuple[list[str], list[str], list[str]]  # OUT-relative paths, sizes, mtimes (as journaled)
TASK_FILES = 4096
PARALLEL_MIN_FILES = 20_000  # fewer are stated in-process: forking would cost more than it saves


def _journaled(out: Path, split: str, origin: str, data: bytes,
               source_identity: str) -> Optional[Files]:
    """The split's files as its journal has them, when the split is finished (published, its
    manifest and list in place, no repair pending) and the journal, written against this
    source, names exactly the listed files."""
    if os.path.lexists(out / staging_name(split)) or os.path.lexists(repair_path(out, split)) \
            or not unchanged_since_written(out, split):
        return None
    journal = journal_fields(read_journal_text(out, split))  # (its numbers compared as text)
    if journal is None or journal[0] != source_identity:
        return None
    _, rels, sizes, mtimes, _ = journal
    paths = data.decode("utf-8-sig", "surrogateescape").split()[0::2]  # (it parsed before: each line
                                                                       # a path and a label)
    if split != origin:
        paths = list(map(f"{split}/".__add__, (p.partition("/")[2] for p in paths)))
    if len(paths) != len(rels) or set(paths) != set(rels):  # (a list names each file once; the
        return None                                       # journal's paths are the list's: safe)
    return rels, sizes, mtimes


def _unchanged(out: str, files: list[Files], workers: int) -> bool:
    """Every file is the regular file of its journaled size and mtime, in forked processes
    for many (stat's own cost is a few microseconds; Python's around it, as much again)."""
    spans = [(k, i, min(i + TASK_FILES, len(f[0]))) for k, f in enumerate(files)
             for i in range(0, len(f[0]), TASK_FILES)]

    def unchanged(span: tuple[int, int, int]) -> bool:
        k, start, end = span
        return _span_unchanged(out, *files[k], start, end)

    if sum(len(f[0]) for f in files) < PARALLEL_MIN_FILES or workers < 2 or not can_fork():
        return all(map(unchanged, spans))
    results = fork_map(unchanged, spans, workers, f"{out}: a re-run's check")
    try:
        return all(results)
    finally:
        results.close()  # at the first file changed: the rest is not looked at


def _span_unchanged(out: str, rels: list[str], sizes: list[str], mtimes: list[str], start: int,
                    end: int) -> bool:
    """Files `start:end`, each stated relative to its class folder, opened (and listed: no
    temporary file of an interrupted run may be left there) once."""
    folders: dict[str, int] = {}
    try:
        for i in range(start, end):
            folder, _, name = rels[i].rpartition("/")
            dir_fd = folders.get(folder)
            if dir_fd is None:
                dir_fd = folders[folder] = os.open(os.path.join(out, folder), _DIR)
                if TMP_SUFFIX in "/".join(os.listdir(dir_fd)):
                    return False
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if str(st.st_size) != sizes[i] or str(st.st_mtime_ns) != mtimes[i] or not stat.S_ISREG(st.st_mode):
                return False
        return True
    except OSError:  # a folder or file gone, a folder swapped for a link
        return False
    finally:
        for fd in folders.values():
            os.close(fd)
