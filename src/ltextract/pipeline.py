"""A whole build, stage after stage, under the OUT lock: lists -> sources located -> jobs ->
the copy engine into the chosen writer -> each split's manifests as it completes."""
from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ltextract import copy, plan
from ltextract.benchmarks import Benchmark
from ltextract.benchmarks.lists import SplitList, check_split
from ltextract.benchmarks.load import load_lists
from ltextract.errors import LtError
from ltextract.formats import Options, SplitWork, Writer, writer_class
from ltextract.formats.links import LINK_OR_COPY
from ltextract.out import manifest
from ltextract.out.apart import check_apart
from ltextract.out.journal import Done, read_journal_entries
from ltextract.out.lock import OutLock, prepare_out, remove_stale_temps
from ltextract.plan.uptodate import nothing_to_do
from ltextract.sources import Reading, Source, stream
from ltextract.sources.split import SplitSource
from ltextract.tar import indexfile, readers
from ltextract.tar.index import ArchiveIndex
from ltextract.tar.truncation import official_size_hint, partial_build
from ltextract.ui import bar, say, warn
from ltextract.workers import alongside, can_fork


@dataclass(frozen=True)
class BuildRequest:
    out: Path
    benchmark: Benchmark
    splits: tuple[str, ...]
    splits_dir: Optional[Path]
    split_urls: Mapping[str, str]
    sources: dict[str, Source]  # origin ("train" | "val") -> where its images are
    strategies: dict[str, str]  # origin -> "seek" | "stream"
    fmt: str
    shard_size: Any
    link: str
    workers: int
    recheck: bool = False  # --recheck: every kept file compared with the source again
    tfds_file_format: str = "tfrecord"
    layout: str = "splits"

    @property
    def recorded(self) -> dict[str, str]:
        """What ltextract.json says of the whole OUT: which benchmark, which layout."""
        return {"benchmark": self.benchmark.name, "layout": self.layout}


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
    check_apart(out, [(f"{o} source", p) for o, src in req.sources.items() for p in src.inputs()]
                + ([("splits dir", req.splits_dir)] if req.splits_dir else []))
    prepare_out(out)
    with OutLock(out), contextlib.ExitStack() as stack:
        if gc.isenabled():  # ~10 records per listed file, all kept to the end: collections would
            gc.disable()    # re-scan them again and again (a tenth of a build) and find no garbage
            stack.callback(gc.enable)
        remove_stale_temps(out)
        kept = nothing_to_do(req, warn)
        if kept is not None:  # every file whole as its journal says: no list parsed, no index read
            for src in req.sources.values():
                say(src.describe(), quiet)
            for split, record in kept.items():
                say(writer_class(req.fmt).describe(split, record), quiet)
            return {"out": str(out), "format": req.fmt, "strategy": req.strategies, "splits": kept}
        lists = load_lists(req.splits, splits_dir=req.splits_dir, split_urls=req.split_urls, warn=warn,
                           benchmark=req.benchmark)
        for split, sl in lists.items():
            check_split(req.benchmark.split(split), sl.entries, Path(sl.source).name)
        manifest.check_format(out, req.splits, req.fmt, req.benchmark.name, req.layout)
        parents = linked_splits(out, req.benchmark, req.splits, req.fmt, req.layout)
        for src in req.sources.values():
            say(src.describe(), quiet)
        own = {s: sl for s, sl in lists.items() if s not in parents}
        summary = build_own(req, own, quiet) if own else \
            {"out": str(out), "format": req.fmt, "strategy": req.strategies, "splits": {}}
        for parent in dict.fromkeys(parents.values()):  # after their parent split is whole in OUT
            linked = {s: lists[s] for s, p in parents.items() if p == parent}
            summary["splits"].update(build_linked(req, parent, linked, quiet))
        summary["splits"] = {s: summary["splits"][s] for s in lists}
        return summary


def build_own(req: BuildRequest, lists: dict[str, SplitList], quiet: bool) -> dict[str, Any]:
    """Build the splits read from the sources: the val tar's alongside, where worth it."""
    apart = side_by_side(req, lists)
    if not apart:
        return build_lists(req, lists, quiet)
    # the side process reports its splits here, where ltextract.json is written (one writer)
    aside = {s: sl for s, sl in lists.items() if s in apart}
    say(f"{' + '.join(aside)}: copied alongside, in a process of its own (no progress bar)", quiet)
    with alongside(lambda: build_lists(req, aside, True, metadata=False),
                   f"the build of {' + '.join(aside)}", SIDE_NICENESS) as join:
        summary = build_lists(req, {s: sl for s, sl in lists.items() if s not in apart}, quiet)
        side = join()["splits"]
    for split, record in side.items():
        manifest.update_metadata(req.out, split, record["metadata"], req.recorded)
        say(writer_class(req.fmt).describe(split, record), quiet)
    summary["splits"] = {s: summary["splits"].get(s) or side[s] for s in lists}
    for record in summary["splits"].values():
        record.pop("metadata", None)
    return summary


def linked_splits(out: Path, bench: Benchmark, splits: Sequence[str], fmt: str,
                  layout: str) -> dict[str, str]:
    """split -> the split in OUT whose files it links to: a subset of another split (SADE's test
    sets of test) whose parent is built now or was built, as class folders of its own."""
    if fmt != "folders" or layout != "splits" or not any(bench.split(s).subset_of for s in splits):
        return {}  # shards hold copies; --layout lists puts both at the very same paths
    try:
        built = manifest.read_metadata(out)["splits"]
    except (LtError, OSError):  # none yet, or OUT is no folder: the build says so
        built = {}
    parents = {}
    for split in splits:
        parent = bench.split(split).subset_of
        if parent and (parent in splits or built.get(parent, {}).get("format", "folders") == "folders"
                       and parent in built):
            parents[split] = parent
    return parents


def build_linked(req: BuildRequest, parent: str, lists: dict[str, SplitList],
                 quiet: bool) -> dict[str, Any]:
    """Build splits whose images are all `parent`'s as hard links to its files in OUT (copies
    of them where the filesystem has no hard links): nothing read from the sources."""
    origin = req.benchmark.split(parent).origin
    journaled = read_journal_entries(req.out, parent)
    src = SplitSource(origin, req.out, parent, journaled.done, journaled.identity)
    say(f"{' + '.join(lists)}: {src.describe()}", quiet)
    return build_lists(replace(req, sources={origin: src}, strategies={origin: "seek"}, link=LINK_OR_COPY),
                       lists, quiet)["splits"]


def side_by_side(req: BuildRequest, lists: dict[str, SplitList]) -> set[str]:
    """The splits of the val tar, when they are to be built in a process of their own."""
    origins = req.benchmark.origins
    if req.fmt != "folders" or req.workers < 2 or not can_fork() or set(req.sources) != {"train", "val"}:
        return set()
    if req.sources["train"].path == req.sources["val"].path:
        return set()  # one tar holds both (Places365's easy format): it is indexed and read once
    if any(req.strategies[o] != "seek" or s.kind != "tar" for o, s in req.sources.items()):
        return set()
    sizes = {o: sum(len(sl.entries) for s, sl in lists.items() if origins[s] == o) for o in req.sources}
    return {s for s in lists if origins[s] == "val"} if min(sizes.values()) >= SIDE_MIN_FILES else set()


class BuildIndexes:
    """The header indexes a build needs: cached, or scanned with a progress bar."""

    def __init__(self, cached: dict[str, ArchiveIndex], quiet: bool, partial: bool):
        self.cached, self.quiet, self.partial = cached, quiet, partial
        self.loaded: dict[Path, ArchiveIndex] = {}  # one tar may hold both origins' images

    def archive(self, src: Source) -> ArchiveIndex:
        found = self.cached.get(src.origin) or self.loaded.get(src.path)
        if found is None:
            found = self.loaded[src.path] = index_archive(src, self.quiet, partial=self.partial)
        return found

    def member_tar(self, tar: Path) -> ArchiveIndex:
        return indexfile.load_or_scan(tar, nested=False)


def index_archive(src: Source, quiet: bool, refresh: bool = False, partial: bool = False) -> ArchiveIndex:
    with bar(f"index {src.path.name}", readers.stat(src.path)[0], quiet) as b:
        return indexfile.load_or_scan(src.path, nested=src.nested, progress=b.update,
                                      refresh=refresh, partial=partial)


def build_lists(req: BuildRequest, lists: dict[str, SplitList], quiet: bool,
                metadata: bool = True) -> dict[str, Any]:
    """Index, plan, copy and record the splits in `lists`, whichever sources they need.
    `metadata=False`: ltextract.json is left to the caller (a build side by side)."""
    origin_of = req.benchmark.origins
    srcs = {o: s for o, s in req.sources.items() if any(origin_of[split] == o for split in lists)}
    kind = writer_class(req.fmt)
    with contextlib.ExitStack() as stack:
        streamed = {o for o in srcs if req.strategies[o] == "stream"}
        # a stream uses an index only when one is already cached; otherwise it needs none
        cached = {o: indexfile.load(srcs[o].path, srcs[o].nested) for o in streamed
                  if srcs[o].indexed}
        unindexed = frozenset(o for o in streamed if cached.get(o) is None)
        planned = plan.plan(lists, srcs, BuildIndexes({o: i for o, i in cached.items() if i}, quiet,
                                                      kind.keeps_partial), req.link, unindexed, req.layout)
        writer = kind(req.out, Options(req.link, req.shard_size, lambda m: say(m, quiet), req.recheck,
                                       req.tfds_file_format, req.benchmark, req.layout))
        works = writer.begin(planned.jobs, {s: planned.identities[origin_of[s]] for s in lists},
                             {s for s in lists if origin_of[s] in planned.cuts})
        stack.callback(writer.end, works)
        records: dict[str, Any] = {}
        for origins in copy_groups(srcs, req.strategies):
            group = {o: srcs[o] for o in origins}
            group_works = [w for w in works if origin_of[w.split] in origins]
            records.update(copy_sources(req, writer, group, group_works, lists, quiet, planned.cuts,
                                        metadata))
        for origin, why in planned.cuts.items():
            kept = sum(records[s]["files"] for s in lists if origin_of[s] == origin)
            listed = sum(len(lists[s].entries) for s in lists if origin_of[s] == origin)
            raise partial_build(why, kept, listed)
        return {"out": str(req.out), "format": req.fmt, "strategy": req.strategies,
                "splits": {s: records[s] for s in lists}}


def copy_groups(srcs: dict[str, Source], strategies: dict[str, str]) -> list[list[str]]:
    """Origins copied in one pass each. Plain tars read by seeking share one (one pool of
    workers; the train tar's splits get their manifests while the val tar's files copy); a
    stream, a tree or split parts have their own, but for one tar holding both origins'
    images (Places365's easy format), streamed once."""
    shared = [o for o, s in srcs.items() if strategies[o] == "seek" and s.kind == "tar"]
    sharded = [o for o, s in srcs.items() if s.sharded]  # all their shards' reads share the cores
    groups: dict[Path, list[str]] = {}
    for o, s in srcs.items():
        if o not in shared + sharded:
            groups.setdefault(s.path if strategies[o] == "stream" and s.kind == "tar" else Path(o),
                              []).append(o)
    return [g for g in (shared, sharded) if g] + list(groups.values())


def copy_sources(req: BuildRequest, writer: Writer, srcs: dict[str, Source], works: list[SplitWork],
                 lists: dict[str, SplitList], quiet: bool, cuts: dict[str, str],
                 metadata: bool = True) -> dict[str, Any]:
    """Copy every split served by `srcs` (train and val from the train tar) in one pass; each
    split's manifests are written as soon as its last file is in. Returns the splits' records;
    a truncated tar (its index says so in `cuts`, a stream finds out and adds it there) has its
    files kept, but its splits are not done: no manifests."""
    started = time.monotonic()
    origin_of = req.benchmark.origins
    todo = [j for w in works for j in w.todo]
    sizes = [j.size for j in todo]
    records: dict[str, Any] = {}

    def finish(w: SplitWork, done: dict[str, Done]) -> None:
        src = srcs[origin_of[w.split]]
        if src.origin not in cuts and len(done) != len(w.jobs):  # (done holds listed files only)
            hint = official_size_hint(src.path.name, src.path.stat().st_size) if src.kind == "tar" else ""
            check_complete(w, done, hint, src.label if src.sharded else "")
        records[w.split] = split_record(req, writer, w, done, src, lists[w.split], started,
                                        src.origin not in cuts, quiet, metadata)

    strategy = req.strategies[next(iter(srcs))]
    with bar(f"{' + '.join(w.split for w in works)} ({strategy})",
             sum(sizes) if min(sizes, default=0) >= 0 else None, quiet) as b, \
            contextlib.ExitStack() as stack:
        if todo and next(iter(srcs.values())).sharded:
            writer.open(works, threads=True)
            stack.callback(writer.close)
            jobs = {o: [j for j in todo if origin_of[j.split] == o] for o in srcs}
            reads = [p for o, s in srcs.items() if jobs[o] for p in s.shard_reads(jobs[o])]
            done = writer.record(works, copy.copy_shards(  # splits finish at the end
                writer, reads, req.workers, b.update, lambda origin, why: cuts.setdefault(origin, why)))
        elif strategy == "seek" or not todo:
            readers = {o: stack.enter_context(contextlib.closing(s.reader())) for o, s in srcs.items()}
            writer.open(works)
            stack.callback(writer.close)
            batches = copy.copy_units(writer, writer.units(works), Reading(readers, origin_of),
                                      req.workers, b.update) if todo else ()
            done = writer.record(works, batches, finish)
        else:
            src = next(iter(srcs.values()))  # (several origins: the same tar)
            tar = None if src.kind == "stdin" else src.path
            f = stack.enter_context(stream.open_source(tar))
            writer.open(works, threads=True)
            stack.callback(writer.close)
            size = tar.stat().st_size if tar and tar.is_file() else None
            done = writer.record(works, copy.stream_jobs(  # splits finish at the end
                writer, f, src.label, src.nested, writer.distinct(works), req.workers, b.update, size,
                lambda why: [cuts.setdefault(o, why) for o in srcs], member_names(srcs, origin_of)))
    for w in works:  # splits a stream's cut (or a tar short of files) left unfinished
        if w.split not in records:
            finish(w, done[w.split])
    return records


def member_names(srcs: dict[str, Source], origin_of: dict[str, str]) -> Optional[copy.Names]:
    """How a stream finds a job's member in a flat tar: by its source's names (per origin: one
    tar may hold both), or by the bare file name."""
    names = {o: s.names_in_tar() for o, s in srcs.items()}
    if not any(names.values()):
        return None
    by_split = {split: names[o] for split, o in origin_of.items() if o in names}
    return lambda job, file: by_split[job.split](job.wnid, file)  # type: ignore[misc]



def check_complete(w: SplitWork, done: dict[str, Done], hint: str = "", source: str = "") -> None:
    """Every listed file of the split is done: the tar held them all. `hint`: the tar's
    `official_size_hint` (a download cut at a member boundary reads as a whole, shorter tar);
    `source`: how to name a source that is not one file (a set of shards)."""
    missing = [j.rel.split("/", 1)[1] for j in w.jobs if j.rel not in done]
    if missing:
        first = ", ".join(missing[:5])
        raise LtError(f"{len(missing):,} image(s) of the {w.split} list are missing from"
                      f" {source or w.jobs[0].file.name}{hint}: {first}{' …' if len(missing) > 5 else ''}")


def split_record(req: BuildRequest, writer: Writer, w: SplitWork, done: dict[str, Done], src: Source,
                 sl: SplitList, started: float, whole: bool, quiet: bool,
                 metadata: bool = True) -> dict[str, Any]:
    """A split's entry in the summary; for a `whole` one, its manifests and (with `metadata`)
    its entry in ltextract.json too (else it is carried in the record, for the caller)."""
    rechecked = sum(d.rechecked for d in done.values())
    record: dict[str, Any] = {"copied": len(w.todo) - rechecked, "kept": len(w.kept),
                              "kept_rechecked": rechecked, "list": list_record(sl)}
    if not whole:  # files before a cut are kept, but the split is not done: no manifests
        finished = [d for j in w.jobs if (d := done.get(j.rel))]
        record.update(files=len(finished), bytes=sum(d.size for d in finished))
    else:
        source = {"source": src.kind, "link": req.link if src.linkable else "copy"}
        rows, meta, stats = writer.finish(w, done, req.benchmark.split(w.split).pin.filename, source)
        record.update(meta, files=len(rows), bytes=sum(r.size for r in rows), **stats)
    record["seconds"] = round(time.monotonic() - started, 3)
    if whole:
        entry = {k: record[k] for k in ("files", "bytes", "list")} | meta
        if metadata:
            manifest.update_metadata(req.out, w.split, entry, req.recorded)
            say(writer.describe(w.split, record), quiet)
        else:
            record["metadata"] = entry
    return record


def list_record(sl: SplitList) -> dict[str, Any]:
    """What ltextract.json keeps of a split's list, so verify can map OUT back to it."""
    record = {"source": sl.source, "sha256": sl.sha256, "published": sl.published,
              "canonical_sha256": sl.canonical_sha256}
    if sl.flat:  # `val/<file>` paths: verify rebuilds the list's lines without class folders
        record["flat"] = True
    if sl.variant:
        record["variant"] = sl.variant
    return record
