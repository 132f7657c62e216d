"""Output formats: one `Writer` class each, with the same methods, the way img2dataset's writers
are built. The pipeline picks the class by name (`writer_class`) and hands the instance to the
copy engine (`ltextract.copy`), which calls only these methods and never imports a writer.

A build of one split through a writer:
  begin     (parent)  what OUT holds already, what is left: `SplitWork`s; the space check
  units     (parent)  the left work cut into units, in the order their bytes are best read
  write_unit (worker) write one unit (a run of files, a shard), example by example, reading
                      each example's bytes with the source's `read`; returns a `Batch`
  record    (parent)  journal each batch; a split whose files are all in is finished at once
  finish    (parent)  the split's manifests and its entry in ltextract.json
and `check`, how `ltextract verify` re-checks a split written in this format.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Collection, Iterable, Iterator, Optional

from ltextract.errors import LtError, UsageError
from ltextract.out.folders import Folders

if TYPE_CHECKING:
    from ltextract.benchmarks import Benchmark
    from ltextract.out.journal import Batch, Done
    from ltextract.out.manifest import Columns, Row
    from ltextract.plan import Job
    from ltextract.workers import Pool

Read = Callable[["Job"], bytes]
ReadInto = Callable[["Job", memoryview], None]
Progress = Optional[Callable[[int], None]]


@dataclass
class SplitWork:
    split: str
    jobs: list[Job]  # every listed file, in list order
    identity: str  # the journal header: the source (and the format's parameters)
    kept: list[Done]  # finished by an earlier run and still whole
    todo: list[Job]  # still to write (a job with `recheck` may be found equal and kept)
    #: OUT/<split> did not exist: the split is written in its staging folder, published at the end
    staged: bool = False
    units: list[Any] = field(default_factory=list)  # `todo` as the writer cuts it


@dataclass(frozen=True)
class Problem:
    path: str
    what: str
    #: what a build rewrites to repair it (OUT-relative): the damaged file, or its shard
    repair: str = ""


@dataclass(frozen=True)
class Options:
    """What the command line says of the output, beyond OUT."""
    link: str = "copy"  # folders from an extracted tree: copy | hardlink | reflink | symlink
    shard_size: Any = None  # sharded formats: the parsed --shard-size
    notice: Callable[[str], None] = print  # one-time notices (reflink falling back to copies)
    #: --recheck: every kept file (shard) is compared with the source again, its bytes re-read
    recheck: bool = False
    tfds_file_format: str = "tfrecord"  # --format tfds: tfrecord | array_record
    #: what is built: its name, classes in label order (`classes`), split names; a format that
    #: names the dataset or its labels (TFDS, Hugging Face) reads them here [default: ImageNet-LT]
    benchmark: Optional[Benchmark] = None
    layout: str = "splits"  # --layout: where files go (`plan.out_path`); jobs carry it as `rel`

    @property
    def class_column(self) -> str:
        """The manifests' third column: what the benchmark's class folders are."""
        return self.benchmark.class_noun if self.benchmark else "wnid"


class Writer:
    name: ClassVar[str]
    #: every job's size is needed before writing (shards are laid out up front): no stream
    #: without an index
    needs_sizes: ClassVar[bool] = False
    #: a split is useful in part: from a truncated tar, the files before the cut are written
    #: (and the build fails after); else a truncated tar fails before anything is written
    keeps_partial: ClassVar[bool] = False
    #: the split's list is rewritten relative to OUT (its files are at the paths it names)
    writes_list: ClassVar[bool] = False
    #: units run in forked processes (no GIL between their system calls), or in threads
    unit_processes: ClassVar[bool] = True

    def __init__(self, out: Path, options: Options):
        self.out, self.options = out, options
        self.folders: Optional[Folders] = None

    @classmethod
    def usable(cls, options: Options) -> None:
        """Raise what keeps this format from running with `options` (an option that does not
        apply, a missing extra), before a build does any work."""
        if options.shard_size is not None and "shard_size" not in cls.options_used:
            raise UsageError(f"--shard-size does not apply to --format {cls.name}")
        if options.tfds_file_format != "tfrecord" and "tfds_file_format" not in cls.options_used:
            raise UsageError(f"--tfds-file-format applies to --format tfds, not {cls.name}")

    #: the `Options` fields this format reads, beyond link
    options_used: ClassVar[tuple[str, ...]] = ()

    # --- parent, before copying ---------------------------------------------------------
    def begin(self, jobs: dict[str, list[Job]], identities: dict[str, str],
              partial: Collection[str]) -> list[SplitWork]:
        raise NotImplementedError

    def units(self, works: list[SplitWork]) -> list[Any]:
        """The works' `todo` cut into units, in the order their bytes are best read."""
        raise NotImplementedError

    def distinct(self, works: list[SplitWork]) -> list[Job]:
        """The works' `todo` to write, where two splits list one file at one path (--layout
        lists) once; `units` cuts these, a stream copies these."""
        return [j for w in works for j in w.todo]

    def open(self, works: list[SplitWork], threads: bool = False) -> None:
        """Resources every unit shares (forked workers inherit them); `threads`: examples come
        one by one from a stream's thread pool (`write`). By default OUT's folders, held open."""
        self.folders = Folders(self.out)

    def close(self) -> None:
        if self.folders is not None:
            self.folders.close()
            self.folders = None

    # --- worker -------------------------------------------------------------------------
    def write_unit(self, unit: Any, read: Read, stopped: Callable[[], bool]) -> Batch:
        raise NotImplementedError

    def write(self, job: Job, data: bytes) -> Done:
        """One example whose bytes arrive one by one (a stream); only where `streams`."""
        raise NotImplementedError

    @staticmethod
    def unit_files(unit: Any) -> int:
        return len(unit)

    # --- parent, after copying ----------------------------------------------------------
    def record(self, works: list[SplitWork], batches: Iterable[Batch],
               on_whole: Optional[Callable[[SplitWork, dict[str, Done]], None]] = None
               ) -> dict[str, dict[str, Done]]:
        raise NotImplementedError

    def finish(self, work: SplitWork, done: dict[str, Done], list_name: str,
               source: dict) -> tuple[list[Row], dict, dict]:
        """The split's manifests (the list rewritten as `list_name`, where files are at paths);
        returns its rows, what ltextract.json says of it beyond files, bytes and list (given
        `source`: the source's kind and link mode), and counts for the build's summary."""
        raise NotImplementedError

    @staticmethod
    def describe(split: str, record: dict) -> str:
        """The line a build prints for a finished split."""
        raise NotImplementedError

    def end(self, works: list[SplitWork]) -> None:
        """The build is over, finished or stopped: leave OUT as a re-run expects it."""

    # --- verify -------------------------------------------------------------------------
    @classmethod
    def check(cls, out: Path, split: str, cols: Columns, record: dict, pool: Pool,
              progress: Progress) -> Iterator[Problem]:
        """The split's problems, given its manifest. A format may start its work at once
        (`folders` gives its files to the pool's workers when called), for verify's own checks
        to go on meanwhile."""
        raise NotImplementedError


#: --format name -> the module holding its writer, imported only when chosen.
_WRITERS = {"folders": "ltextract.formats.folders:FoldersWriter",
            "webdataset": "ltextract.formats.webdataset:WebdatasetWriter",
            "tfds": "ltextract.formats.tfds:TfdsWriter",
            "hf": "ltextract.formats.hf:HfWriter"}
FORMATS = tuple(_WRITERS)


def writer_class(name: str) -> type[Writer]:
    module, _, cls = _WRITERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def shard_counts(shards: int, kept: int, rechecked: int = 0) -> dict:
    """A sharded split's counts for the summary: a shard is what a re-run keeps or rewrites
    (`rechecked`: kept after --recheck found it equal to the source)."""
    return {"copied_shards": shards - kept - rechecked, "kept_shards": kept, "kept_rechecked_shards": rechecked}


def describe_shards(split: str, record: dict, shards: int, what: str) -> str:
    rechecked = record.get("kept_rechecked_shards", 0)
    return (f"{split}: {record['files']:,} {what} in {shards:,} shard(s), {record['bytes'] / 1e6:,.1f} MB"
            f" (wrote {record['copied_shards']:,}, kept {record['kept_shards']:,}"
            + (f", kept after re-check {rechecked:,})" if rechecked else ")"))


def need_extra(module: str, extra: str, fmt: str) -> None:
    """Import `module`, or say which extra --format `fmt` needs."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise LtError(f"--format {fmt} needs the Python module {module}:"
                      f" pip install 'ltextract[{extra}]'") from None


def reads_into(read: Read) -> ReadInto:
    """`read`'s own way of reading a job straight into a buffer (`sources.Reading.into`), or
    one that copies what `read` returns."""
    into: Optional[ReadInto] = getattr(read, "into", None)
    if into is not None:
        return into

    def copy(job: "Job", buf: memoryview) -> None:
        data = read(job)
        if len(data) != len(buf):
            raise LtError(f"{job.file}: {job.rel} holds {len(data):,} bytes, its index {len(buf):,};"
                          " the source changed during the build, re-run it")
        buf[:] = data
    return copy
