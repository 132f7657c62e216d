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
    from ltextract.counts import Stats
    from ltextract.tar.index import ArchiveIndex
    from ltextract.checks import Report

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_WORKERS = min(8, 2 * (os.cpu_count() or 1))


def _path(p: Optional[PathLike]) -> Optional[Path]:
    return None if p is None else Path(os.path.expanduser(os.fspath(p)))


def build(out: PathLike, manual_dir: Optional[PathLike] = None, *, splits: Sequence[str] = (),
          splits_dir: Optional[PathLike] = None, split_urls: Optional[Mapping[str, str]] = None,
          strategy: str = "auto", workers: int = DEFAULT_WORKERS, format: str = "folders",
          shard_size: Optional[str] = None, train_source: Optional[PathLike] = None,
          val_source: Optional[PathLike] = None, link: str = "copy", quiet: bool = False,
          benchmark: Optional[str] = None, tfds_file_format: str = "tfrecord") -> dict[str, Any]:
    """Build the benchmark's splits (default: all) into `out`; returns the summary that
    `ltextract build --json` prints. Resumable: run it again after any interruption.
    `train_source`/`val_source`: a tar, split tar, folder of class tars or tree ("-": stdin).
    `shard_size`: webdataset (default 1GB) and hf (default 500MB) shards."""
    from ltextract import pipeline
    from ltextract.benchmarks import get
    from ltextract.formats import FORMATS, Options, writer_class
    from ltextract.formats.links import MODES
    from ltextract.formats.webdataset import parse_shard_size
    from ltextract.out.folders import raise_open_files
    from ltextract.sources.detect import STDIN, resolve, resolve_manual_dir
    from ltextract.sources.storage import STRATEGIES, strategy_of

    bench = get(benchmark)
    _choose("format", format, FORMATS)
    _choose("strategy", strategy, STRATEGIES)
    _choose("link", link, MODES)
    try:
        shards = None if shard_size is None else parse_shard_size(shard_size)
    except ValueError as e:
        raise UsageError(f"--shard-size: {e}") from None
    if link != "copy" and format != "folders":
        raise UsageError("--link applies to --format folders (shards always hold copies)")
    writer_class(format).usable(Options(link, shards, tfds_file_format=tfds_file_format))
    chosen = tuple(dict.fromkeys(splits)) or bench.split_names
    for split in (*chosen, *(split_urls or {})):
        bench.split(split)  # an unknown name fails here
    origins = sorted({bench.split(s).origin for s in chosen})
    explicit = {"train": _path(train_source), "val": _path(val_source)}
    if sum(explicit[o] == STDIN for o in origins) > 1:
        raise UsageError("only one of --train-source and --val-source can be - (stdin)")
    manual = resolve_manual_dir(_path(manual_dir)) if any(explicit[o] is None for o in origins) else None
    srcs = {o: resolve(manual, o, explicit[o]) for o in origins}
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
    out_path = _path(out)
    assert out_path is not None
    return pipeline.run_build(pipeline.BuildRequest(
        out_path, bench, chosen, _path(splits_dir), dict(split_urls or {}), srcs, strategies, format,
        shards, link, workers, tfds_file_format), quiet)


def _choose(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UsageError(f"--{what} {value!r}: expected one of {', '.join(allowed)}")


def verify(out: PathLike, workers: int = DEFAULT_WORKERS, progress=None) -> "Report":
    """Re-hash every file (or shard) of `out` against its manifest and the lists; the report's
    `ok` is True when everything holds, else `problems` says what and where."""
    from ltextract.checks import verify as run

    path = _path(out)
    assert path is not None
    if not path.is_dir():
        raise LtError(f"{path} is not a folder")
    return run(path, workers, progress)


def stats(out: Optional[PathLike] = None, splits_dir: Optional[PathLike] = None) -> "Stats":
    """Per-class train counts and the many/medium/few-shot groups, from a built OUT or a folder
    holding the train list."""
    from ltextract import counts as st

    if (out is None) == (splits_dir is None):
        raise UsageError("give either OUT or --splits-dir DIR")
    path = _path(out)
    if path is not None:
        if not path.is_dir():
            raise LtError(f"{path} is not a folder")
        return st.from_out(path)
    return st.from_splits_dir(_path(splits_dir))  # type: ignore[arg-type]


def fetch(dest: Optional[PathLike] = None, warn=None) -> dict[str, Path]:
    """Download the published lists (checked against their pins) into `dest` or the cache."""
    from ltextract.benchmarks.fetch import fetch_lists

    return fetch_lists(_path(dest), **({"warn": warn} if warn else {}))


def index(manual_dir: Optional[PathLike] = None, refresh: bool = False,
          quiet: bool = True) -> Iterator[tuple[Path, "ArchiveIndex"]]:
    """The header index of each tar in the manual dir (from the cache when it still matches),
    each yielded as soon as it is loaded or scanned."""
    from ltextract.pipeline import index_archive
    from ltextract.sources.detect import archives, resolve_manual_dir

    for src in archives(resolve_manual_dir(_path(manual_dir))):
        yield src.path, index_archive(src, quiet, refresh)
