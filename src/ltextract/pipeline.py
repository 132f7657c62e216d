"""A whole build, stage after stage: lists -> index -> copy (or shards) -> manifests.

The CLI checks options and picks sources and strategies; this runs them under the OUT lock.
"""
from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ltextract import (extract, indexfile, links, manifest, multipart, outdir, resume, shards, sources,
                       stream, tarindex)
from ltextract.base import TarError, official_size_hint
from ltextract.manifest import Row
from ltextract.outdir import Done
from ltextract.sources import TARS
from ltextract.splits import TOP, SplitList, check_split, load_lists
from ltextract.ui import bar, say, warn
from ltextract.workers import alongside, can_fork



@dataclass(frozen=True)
class BuildRequest:
    out: Path
    splits: tuple[str, ...]
    splits_dir: Optional[Path]
    split_urls: Mapping[str, str]
    srcs: dict[str, sources.Source]  # list top -> where its images are
    how: dict[str, str]  # list top -> "seek" | "stream"
    fmt: str  # "folders" | "webdataset"
    shard_size: shards.ShardSize
    link: str
    workers: int


#: Each tar's splits are built in a process of their own, side by side, when both tars hold at
#: least this many listed files: the planning of one then overlaps the copying of the other
#: (a serial second of a full build), and each side has its own parent to feed its workers.
SIDE_MIN_FILES = 10_000
#: The val tar's side runs this much nicer: the train tar's is the long one (it plans 135K files
#: against 1.25M index entries before its first copy), the other fills in the CPU around it.
#: Fresh ext4 per run, 5 alternating rounds: 4.54 s at 0, 4.06 s at 10, 4.30 s at 19; again
#: with memory kept free (see bench/README.md), 3.71 s at 10 and 3.80 s at 19.
SIDE_NICENESS = 10


def run_build(req: BuildRequest, quiet: bool) -> dict[str, Any]:
    """Build every requested split into req.out; returns the summary `--json` prints."""
    out = req.out
    outdir.prepare_out(out)
    with outdir.OutLock(out), contextlib.ExitStack() as stack:
        if gc.isenabled():  # ~10 records per listed file, all kept to the end: collections would
            gc.disable()    # re-scan them again and again (a tenth of a build) and find no garbage
            stack.callback(gc.enable)
        outdir.remove_stale_temps(out)
        lists = load_lists(req.splits, splits_dir=req.splits_dir, split_urls=req.split_urls, warn=warn)
        for split, sl in lists.items():
            check_split(split, sl.entries, Path(sl.source).name)
        manifest.check_format(out, req.splits, req.fmt)
        for src in req.srcs.values():
            say(src.describe(), quiet)
        apart = side_by_side(req, lists)
        if not apart:
            return build_lists(req, lists, quiet)
        # the side process reports its splits here, where ltextract.json is written (one writer)
        aside = {s: sl for s, sl in lists.items() if s in apart}
        say(f"{' + '.join(aside)}: copied alongside, in a process of its own (no progress bar)", quiet)
        with alongside(lambda: build_lists(req, aside, True, metadata=False),
                       f"the build of {' + '.join(aside)}", SIDE_NICENESS) as join:
            summary = build_lists(req, {s: sl for s, sl in lists.items() if s not in apart}, quiet)
            records = join()["splits"]
        for split, record in records.items():
            src = req.srcs[TOP[split]]
            manifest.update_metadata(out, split, split_metadata(record, src, req.link))
            say(split_line(split, record), quiet)
        summary["splits"] = {s: summary["splits"].get(s) or records[s] for s in lists}
        return summary


def side_by_side(req: BuildRequest, lists: dict[str, SplitList]) -> set[str]:
    """The splits of the val tar, when they are to be built in a process of their own."""
    if req.fmt != "folders" or req.workers < 2 or not can_fork() or set(req.srcs) != set(TARS):
        return set()
    if any(req.how[t] != "seek" or s.kind != "tar" for t, s in req.srcs.items()):
        return set()
    sizes = {top: sum(len(sl.entries) for s, sl in lists.items() if TOP[s] == top) for top in TARS}
    return {s for s in lists if TOP[s] == "val"} if min(sizes.values()) >= SIDE_MIN_FILES else set()


def build_lists(req: BuildRequest, lists: dict[str, SplitList], quiet: bool,
                metadata: bool = True) -> dict[str, Any]:
    """Index, plan, copy and record the splits in `lists`, whichever tars they need.
    `metadata=False`: ltextract.json is left to the caller (a build side by side)."""
    out, how, link, workers = req.out, req.how, req.link, req.workers
    srcs = {t: s for t, s in req.srcs.items() if any(TOP[split] == t for split in lists)}
    with contextlib.ExitStack() as stack:
        # a stream uses an index only when one is already cached; otherwise it needs none
        cached = {top: indexfile.load(src.path, top == "train") for top, src in srcs.items()
                  if how[top] == "stream" and src.kind != "stdin"}
        unindexed = {top for top in srcs if how[top] == "stream" and cached.get(top) is None}
        # a truncated tar still yields the files before the cut (folders only: shards need all)
        jobs, identities, damage = sources.plan(
            {s: sl for s, sl in lists.items() if TOP[s] not in unindexed},
            {t: s for t, s in srcs.items() if t not in unindexed},
            lambda s: cached.get(s.top) or load_index(s.path, s.top, quiet, partial=req.fmt == "folders"),
            lambda tar: indexfile.load_or_scan(tar, nested=False), link)
        for split, sl in lists.items():
            src = srcs[TOP[split]]
            if src.top in unindexed:
                jobs[split] = extract.plan_unindexed(split, sl, src.path)
                identities[src.top] = outdir.file_identity(None if src.kind == "stdin" else src.path)
        if req.fmt == "webdataset":
            return build_shards(out, lists, jobs, identities, req.shard_size, workers, quiet)
        cut = {s for s in lists if TOP[s] in damage}
        work = resume.prepare(out, {s: jobs[s] for s in lists}, identities, lists, partial=cut)
        # a split whose copy never started (an earlier source failed) is published as it is too
        stack.callback(resume.publish_staged, out, work, {w.split: {d.rel: d for d in w.kept}
                                                          for w in work if w.staged}, False)
        # one Placer per mode, so a reflink fallback is announced once per run
        placers = {mode: links.Placer(mode, lambda m: say(m, quiet)) for mode in {link, "copy"}}
        place = {top: placers[link if s.kind == "tree" else "copy"] for top, s in srcs.items()
                 if s.kind not in sources.INDEXED + ("stdin",)}
        for top, s in srcs.items():
            if s.kind == "multipart":
                reader = stack.enter_context(contextlib.closing(multipart.PartsReader(s.path)))
                place[top] = lambda folders, job, r=reader: extract.write_one(
                    folders, job, r.read(job.offset, job.size))
        records: dict[str, Any] = {}
        for tops in passes(srcs, how, place):
            records.update(copy_source(out, {t: srcs[t] for t in tops}, how[tops[0]],
                                       [w for w in work if TOP[w.split] in tops], lists, workers,
                                       quiet, place.get(tops[0]), link, damage, metadata))
        for top, why in damage.items():
            kept = sum(records[s]["files"] for s in lists if TOP[s] == top)
            listed = sum(len(lists[s].entries) for s in lists if TOP[s] == top)
            raise TarError(f"{why}; the {kept:,} of {listed:,} listed files that lie before the cut"
                           " are extracted and kept: restore the complete tar and re-run to finish")
        return {"out": str(out), "strategy": how, "splits": {s: records[s] for s in lists}}


def load_index(tar: Path, top: str, quiet: bool, refresh: bool = False,
               partial: bool = False) -> tarindex.ArchiveIndex:
    with bar(f"index {tar.name}", multipart.stat(tar)[0], quiet) as b:
        return indexfile.load_or_scan(tar, nested=top == "train", progress=b.update, refresh=refresh,
                                      partial=partial)


def passes(srcs: dict[str, sources.Source], how: dict[str, str],
           place: dict[str, extract.Place]) -> list[list[str]]:
    """Tops copied in one pass each. Plain tars read by seeking share one (one pool of workers;
    the train tar's splits get their manifests while the val tar's files copy); a stream, a
    tree or split parts have their own."""
    shared = [t for t in srcs if how[t] == "seek" and t not in place]
    return ([shared] if shared else []) + [[t] for t in srcs if t not in shared]


def copy_source(out: Path, srcs: dict[str, sources.Source], how: str, works: list[resume.SplitWork],
                lists: dict[str, SplitList], workers: int, quiet: bool,
                place: Optional[extract.Place], link: str, damage: dict[str, str],
                metadata: bool = True) -> dict[str, Any]:
    """Copy every split served by `srcs` (train and val from the train tar) in one pass; each
    split's manifests are written as soon as its last file is in. Returns the splits' records;
    a truncated tar (the index says so in `damage`, a stream finds out and adds it there) has
    its files kept, but its splits are not done: no manifests."""
    started = time.monotonic()
    todo = [j for w in works for j in w.todo]
    sizes = [j.size for j in todo]
    staged = {w.split for w in works if w.staged}
    records: dict[str, Any] = {}

    def finish(w: resume.SplitWork, done: dict[str, Done]) -> None:
        src = srcs[TOP[w.split]]
        if src.top not in damage and len(done) != len(w.jobs):  # (done holds listed files only)
            hint = official_size_hint(src.path.name, src.path.stat().st_size) if src.kind == "tar" else ""
            extract.check_complete([w], {w.split: done}, hint)
        records[w.split] = split_record(out, w, done, src, lists[w.split], link, started,
                                        src.top not in damage, quiet, metadata)

    with bar(f"{' + '.join(w.split for w in works)} ({how})",
             sum(sizes) if min(sizes, default=0) >= 0 else None, quiet) as b:
        if how == "seek" or not todo:
            copied = extract.copy_jobs(out, todo, workers, b.update, place, staged) if todo else ()
            done = extract.record(out, works, copied, finish)
        else:
            (top, src), = srcs.items()
            tar = None if src.kind == "stdin" else src.path
            with stream.open_source(tar) as f:
                label = str(tar) if tar else f"{TARS[src.top]} from stdin"
                size = tar.stat().st_size if tar and tar.is_file() else None
                done = extract.record(out, works, extract.stream_jobs(  # splits finish at the end
                    out, f, label, src.top == "train", todo, workers, b.update, size,
                    lambda why: damage.setdefault(top, why), staged))
    for w in works:  # splits a stream's cut (or a tar short of files) left unfinished
        if w.split not in records:
            finish(w, done[w.split])
    return records


def split_record(out: Path, w: resume.SplitWork, done: dict[str, Done], src: sources.Source,
                 sl: SplitList, link: str, started: float, whole: bool, quiet: bool,
                 metadata: bool = True) -> dict[str, Any]:
    """A split's entry in the summary; for a `whole` one, its manifests and (with `metadata`)
    its entry in ltextract.json too."""
    finished = done.get
    rows = [Row(j.rel, j.label, j.wnid, d.size, d.sha256) for j in w.jobs if (d := finished(j.rel))]
    rechecked = sum(d.rechecked for d in done.values())
    record = {"files": len(rows), "bytes": sum(r.size for r in rows),
              "copied": len(w.todo) - rechecked, "kept": len(w.kept), "kept_rechecked": rechecked,
              "seconds": round(time.monotonic() - started, 3), "list": list_record(sl)}
    if whole:
        manifest.write_split(out, w.split, rows)
        if metadata:
            manifest.update_metadata(out, w.split, split_metadata(record, src, link))
            say(split_line(w.split, record), quiet)
    return record


def split_metadata(record: dict[str, Any], src: sources.Source, link: str) -> dict[str, Any]:
    """What ltextract.json says of a split built as folders."""
    return {k: record[k] for k in ("files", "bytes", "list")} | {
        "format": "folders", "source": src.kind, "link": link if src.kind == "tree" else "copy"}


def split_line(split: str, record: dict[str, Any]) -> str:
    return (f"{split}: {record['files']:,} files, {record['bytes'] / 1e6:,.1f} MB"
            f" (copied {record['copied']:,}, kept {record['kept']:,},"
            f" kept after re-check {record['kept_rechecked']:,}) in {record['seconds']:.1f} s")


def list_record(sl: SplitList) -> dict[str, Any]:
    """What ltextract.json keeps of a split's list, so verify can map OUT back to it."""
    return {"source": sl.source, "sha256": sl.sha256, "published": sl.published,
            "canonical_sha256": sl.canonical_sha256}


def build_shards(out: Path, lists: dict[str, SplitList], jobs: dict[str, list[extract.Job]],
                 identities: dict[str, str], size: shards.ShardSize, workers: int,
                 quiet: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {"out": str(out), "format": "webdataset", "splits": {}}
    resume.check_space(out, [j for js in jobs.values() for j in js])
    for split, split_jobs in jobs.items():
        started = time.monotonic()
        with bar(split, sum(j.size for j in split_jobs), quiet) as b:
            result = shards.build_split(out, split, split_jobs, size, identities[TOP[split]], workers,
                                        b.update)
        rows = result.rows(split_jobs)
        sl = lists[split]
        record = {"format": "webdataset", "files": len(rows), "bytes": sum(r.size for r in rows),
                  "shards": len(result.shards), "shard_size": str(size),
                  "list": list_record(sl)}
        manifest.write_split(out, split, rows, with_list=False)
        manifest.update_metadata(out, split, record)
        summary["splits"][split] = record | {"copied_shards": result.copied, "kept_shards": result.kept,
                                             "seconds": round(time.monotonic() - started, 3)}
        say(f"{split}: {len(rows):,} samples in {len(result.shards):,} shard(s),"
            f" {record['bytes'] / 1e6:,.1f} MB"
            f" (wrote {result.copied:,}, kept {result.kept:,})", quiet)
    return summary
