"""The Python API: what each command does, as functions that return results and raise
`LtError` (and its kinds) instead of printing and exiting. The command line is a thin wrapper.

    import ltextract
    summary = ltextract.build("~/data/ImageNet_LT", manual_dir="~/imagenet")
    assert ltextract.verify("~/data/ImageNet_LT").ok
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence, Union

from ltextract.errors import LtError, UsageError

if TYPE_CHECKING:
    from ltextract.benchmarks import Benchmark
    from ltextract.counts import Stats
    from ltextract.tar.index import ArchiveIndex
    from ltextract.checks import Report
    from ltextract.sources.official import ArchiveCheck

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_WORKERS = min(8, 2 * (os.cpu_count() or 1))


def _path(p: Optional[PathLike]) -> Optional[Path]:
    return None if p is None else Path(os.path.expanduser(os.fspath(p)))


def build(out: PathLike, manual_dir: Optional[PathLike] = None, *, splits: Sequence[str] = (),
          splits_dir: Optional[PathLike] = None, split_urls: Optional[Mapping[str, str]] = None,
          strategy: str = "auto", workers: int = DEFAULT_WORKERS, format: str = "folders",
          shard_size: Optional[str] = None, train_source: Optional[PathLike] = None,
          val_source: Optional[PathLike] = None, link: str = "copy", quiet: bool = False,
          benchmark: Optional[str] = None, layout: str = "splits",
          tfds_file_format: str = "tfrecord", recheck: bool = False) -> dict[str, Any]:
    """Build the benchmark's splits (default: its default ones) into `out`; returns the summary
    that `ltextract build --json` prints. Resumable: run it again after any interruption; it also
    rewrites the files `verify` found damaged. `recheck`: compare every file kept from an earlier
    run with the source (its bytes read again), rewriting those that differ.
    `benchmark`: a name from `ltextract benchmarks` (default imagenet_lt); `layout`: "splits"
    (OUT/<split>/<class>/<file>) or "lists" (every file at its list path);
    `train_source`/`val_source`: a tar, split tar, folder of class tars or tree ("-": stdin).
    `shard_size`: webdataset (default 1GB) and hf (default 500MB) shards."""
    from ltextract import pipeline
    from ltextract.benchmarks import get
    from ltextract.formats import FORMATS, Options, writer_class
    from ltextract.plan import LAYOUTS
    from ltextract.formats.links import MODES
    from ltextract.formats.shards import parse_shard_size
    from ltextract.out.folders import raise_open_files
    from ltextract.out.manifest import check_format
    from ltextract.sources.detect import STDIN, resolve, resolve_manual_dir
    from ltextract.sources.storage import STRATEGIES, strategy_of

    bench = get(benchmark)
    _choose("layout", layout, LAYOUTS)
    _choose("format", format, FORMATS)
    _choose("strategy", strategy, STRATEGIES)
    _choose("link", link, MODES)
    try:
        shards = None if shard_size is None else parse_shard_size(shard_size)
    except ValueError as e:
        raise UsageError(f"--shard-size: {e}") from None
    if link != "copy" and format != "folders":
        raise UsageError("--link applies to --format folders (shards always hold copies)")
    writer_class(format).usable(Options(link, shards, tfds_file_format=tfds_file_format, benchmark=bench,
                                        layout=layout))
    chosen = tuple(dict.fromkeys(splits)) or bench.default_splits
    for split in (*chosen, *(split_urls or {})):
        _split_of(bench, split)  # an unknown name fails here
    out_path = _path(out)
    assert out_path is not None
    if out_path.is_dir():  # an OUT of another benchmark or layout: said before any source is sought
        check_format(out_path, chosen, format, bench.name, layout)
    # splits linked to another split's files in OUT (SADE's to test's) read no source
    linked = pipeline.linked_splits(out_path, bench, chosen, format, layout)
    origins = sorted({bench.split(s).origin for s in chosen if s not in linked})
    explicit = {"train": _path(train_source), "val": _path(val_source)}
    if sum(explicit[o] == STDIN for o in origins) > 1:
        raise UsageError("only one of --train-source and --val-source can be - (stdin)")
    manual = resolve_manual_dir(_path(manual_dir)) if any(explicit[o] is None for o in origins) else None
    srcs = {o: resolve(manual, o, explicit[o], bench.images) for o in origins}
    strategies = {o: strategy_of(strategy, src) for o, src in srcs.items()}
    if writer_class(format).needs_sizes and any(s.sharded for s in srcs.values()):
        raise UsageError(f"--format {format} lays its shards out by image size and reads images"
                         " in shard order; the Hub's shards give neither before a full read: build"
                         " --format folders from them, then the shards from that build (see README)")
    if writer_class(format).needs_sizes and "stream" in strategies.values():
        raise UsageError(f"--format {format} reads by offset: use --strategy seek")
    if link != "copy" and not any(s.kind == "tree" for s in srcs.values()):
        raise LtError(f"--link {link} needs an extracted tree as source, but "
                      + "; ".join(s.describe() for s in srcs.values()))
    raise_open_files()  # a folder held open per class folder written (`folders_per_process`)
    return pipeline.run_build(pipeline.BuildRequest(
        out_path, bench, chosen, _path(splits_dir), dict(split_urls or {}), srcs, strategies, format,
        shards, link, workers, recheck, tfds_file_format=tfds_file_format, layout=layout), quiet)


def _choose(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UsageError(f"--{what} {value!r}: expected one of {', '.join(allowed)}")


def _split_of(bench: "Benchmark", name: str) -> None:
    """An unknown split is a usage error, named with the benchmark's own splits."""
    if name not in bench.split_names:
        raise UsageError(f"unknown split {name!r} of {bench.name} (expected one of"
                         f" {', '.join(bench.split_names)})")


def verify(out: PathLike, workers: int = DEFAULT_WORKERS, progress=None, record: bool = True) -> "Report":
    """Re-hash every file (or shard) of `out` against its manifest and the lists; the report's
    `ok` is True when everything holds, else `problems` says what and where. No output file is
    changed; with `record`, the damaged files are noted in OUT's state folder for the next build
    to rewrite (`report.repair`; `report.unrecorded` says why not, if it could not)."""
    from ltextract.checks import verify as run

    path = _path(out)
    assert path is not None
    if not path.is_dir():
        raise LtError(f"{path} is not a folder")
    return run(path, workers, progress, record)


def verify_sources(manual_dir: Optional[PathLike] = None, md5: bool = False,
                   progress=None) -> list["ArchiveCheck"]:
    """The official archives in the manual dir (whole or split into parts) against their
    official sizes and, with `md5`, md5s (each read once, front to back); see `.problem()`."""
    from ltextract.sources.detect import resolve_manual_dir
    from ltextract.sources.official import add_md5s, check_sizes

    checks = check_sizes(resolve_manual_dir(_path(manual_dir)))
    if md5:
        add_md5s(checks, progress or (lambda n: None))
    return checks


def stats(out: Optional[PathLike] = None, splits_dir: Optional[PathLike] = None,
          benchmark: Optional[str] = None, export: Optional[PathLike] = None) -> "Stats":
    """Per-class train counts and the many/medium/few-shot groups, from a built OUT (of the
    benchmark its ltextract.json names) or a folder holding `benchmark`'s train list; with
    `export`, also writes classnames.txt, class_counts.json and shot_groups.json there."""
    from ltextract import counts as st
    from ltextract.benchmarks import get

    if (out is None) == (splits_dir is None):
        raise UsageError("give either OUT or --splits-dir DIR")
    path = _path(out)
    if path is not None:
        if benchmark is not None:
            raise UsageError("--benchmark goes with --splits-dir: OUT records its own")
        if not path.is_dir():
            raise LtError(f"{path} is not a folder")
        result = st.from_out(path)
    else:
        result = st.from_splits_dir(_path(splits_dir), get(benchmark))  # type: ignore[arg-type]
    if export is not None:
        st.export(result, _path(export))  # type: ignore[arg-type]
    return result


def fetch(dest: Optional[PathLike] = None, warn=None, benchmark: Optional[str] = None,
          splits: Sequence[str] = ()) -> dict[str, Path]:
    """Download the benchmark's published lists (default: those `build` makes by default),
    checked against their pins, into `dest` or the cache."""
    from ltextract.benchmarks import get
    from ltextract.benchmarks.fetch import fetch_lists

    bench = get(benchmark)
    for split in splits:
        _split_of(bench, split)
    return fetch_lists(_path(dest), tuple(dict.fromkeys(splits)) or bench.default_splits,
                       benchmark=bench, **({"warn": warn} if warn else {}))


def benchmarks() -> list[dict[str, Any]]:
    """The catalog: each benchmark's splits, counts, archives, lists with pins and mirrors."""
    from ltextract.benchmarks import catalog
    from ltextract.benchmarks.describe import describe

    return [describe(b) for b in catalog().values()]


def index(manual_dir: Optional[PathLike] = None, refresh: bool = False,
          quiet: bool = True) -> Iterator[tuple[Path, "ArchiveIndex"]]:
    """The header index of each tar in the manual dir (from the cache when it still matches),
    each yielded as soon as it is loaded or scanned."""
    from ltextract.pipeline import index_archive
    from ltextract.sources.detect import archives, resolve_manual_dir

    for src in archives(resolve_manual_dir(_path(manual_dir))):
        yield src.path, index_archive(src, quiet, refresh)
