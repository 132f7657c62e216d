"""Where a list's images are: one `Source` subclass per shape users keep ILSVRC2012 in (a tar of
class tars or a flat tar, a tar split into parts, a folder of class tars, an extracted tree, a
tar on stdin), behind one small interface: `locate` the listed images (file, offset, size each)
and `reader` to read their bytes. Shapes are told apart in one place, `detect`."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Iterator, Optional, Protocol

from ltextract.errors import TarError
from ltextract.tar.truncation import short_read

if TYPE_CHECKING:
    from ltextract.tar.index import ArchiveIndex

Key = tuple[str, str]  # (wnid, file name) as a list names it


#: Where an image's bytes lie: (the file holding them, the payload's offset in it, its size).
#: A plain tuple: a build makes one per listed file, and a NamedTuple's Python-level
#: constructor cost a tenth of the planning time.
Where = tuple[Path, int, int]


class Job(Protocol):
    """What reading needs of a `plan.Job` (sources come before planning)."""
    split: str
    rel: str
    wnid: str
    file: Path
    offset: int
    size: int


class Indexes(Protocol):
    """Header indexes, loaded (or scanned, with progress shown) by the caller."""

    def archive(self, src: "Source") -> "ArchiveIndex": ...

    def member_tar(self, tar: Path) -> "ArchiveIndex": ...


@dataclass
class Located:
    where: dict[Key, Where]  # keys not found are left out: the planner reports them
    name: str  # the source as the "missing from" error names it
    index: Optional["ArchiveIndex"] = None  # for a single archive: its identity comes from it
    cut: str = ""  # why a truncated archive holds only the images before the cut
    #: sha256 of images known without reading them (another split's journal in OUT)
    digests: dict[Key, str] = field(default_factory=dict)


class Reader(Protocol):
    """Reads a job's bytes; shared by forked copy workers (no file position is used)."""

    def read(self, job: Job) -> bytes: ...

    def read_into(self, job: Job, buf: memoryview) -> None:
        """The job's bytes into `buf` (`job.size` long): a writer that gathers images into one
        buffer saves a copy of each, and the allocation of a bytes object."""

    def close(self) -> None: ...


class Reading:
    """How the copy engine reads a job: from the one reader, or from its origin's."""

    def __init__(self, readers: dict[str, Reader], origin_of: dict[str, str]) -> None:
        self.only = next(iter(readers.values())) if len(readers) == 1 else None
        self.by_split = {split: readers[origin] for split, origin in origin_of.items() if origin in readers}

    def __call__(self, job: Job) -> bytes:
        return (self.only or self.by_split[job.split]).read(job)

    def into(self, job: Job, buf: memoryview) -> None:
        (self.only or self.by_split[job.split]).read_into(job, buf)


class Source:
    """The images of one origin ("train" or "val": the list path's first folder)."""

    kind: ClassVar[str]
    indexed: ClassVar[bool] = False  # located through the header index of one archive
    linkable: ClassVar[bool] = False  # whole files, which --link may place as links
    streamable: ClassVar[bool] = False  # may be read in one sequential pass instead (a tar)
    seekable: ClassVar[bool] = True  # read by offset at all (not a pipe, not gzip)
    #: read shard by shard, several at once (`shard_reads`), never job by job: the
    #: Hugging Face Hub's shards. Their images' sizes are known only once read.
    sharded: ClassVar[bool] = False

    def __init__(self, origin: str, path: Path):
        self.origin, self.path = origin, path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.origin!r}, {str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]

    @property
    def shape(self) -> str:
        """What the source is, for messages."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.origin} from {self.path} ({self.shape})"

    @property
    def nested(self) -> bool:
        """A tar of tars: its images are members of the member tars (the ILSVRC train tar)."""
        return False

    @property
    def label(self) -> str:
        """The source as a stream's messages name it."""
        return str(self.path)

    @property
    def identity_note(self) -> str:
        """What else a journal's identity must name for files from here to be trusted again."""
        return ""

    def locate(self, keys: set[Key], indexes: Indexes) -> Located:
        raise NotImplementedError

    def inputs(self) -> list[Path]:
        """Every file or folder it reads from (OUT must stay apart from each)."""
        return [self.path]

    def names_in_tar(self) -> Optional[Callable[[str, str], tuple[str, ...]]]:
        """How a flat tar may name a key's member, the first found wins: None for the bare file
        name (ILSVRC2012's val tar); paths in Places365's tars (`sources.places`)."""
        return None

    def reader(self) -> Reader:
        return FileEachReader()

    def identity(self) -> Optional[str]:
        """The journal identity, for a source that words its own (a set of shards); None:
        `plan.identity` works it out from the kind."""
        return None

    def shard_reads(self, jobs: list[Job]) -> list["ShardRead"]:
        """A `sharded` source's reading of `jobs`: one pass per shard that holds any."""
        raise NotImplementedError


class ShardRead(Protocol):
    """One shard read front to back in a process of its own: `run` writes the jobs it holds
    with `write(job, data)` (in `threads` threads) and yields each result as it is written;
    a shard that ends early yields the reason last, a `str` (the files before it are kept)."""
    origin: str
    label: str

    def run(self, write: Callable[[Job, bytes], object], threads: int) -> Iterator[object]: ...


def is_file(path: Path) -> bool:
    """A readable regular file (a tar: True) or a folder (False); anything else is an error."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TarError(f"{path} not found") from None
    if stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            raise TarError(f"{path} is not readable")
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise TarError(f"{path} is neither a tar nor a folder")
    return False


class FileEachReader:
    """Sources of many files (trees, class tars): each job's file is opened when it is read."""

    def read(self, job: Job) -> bytes:
        fd = os.open(job.file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, job.size, job.offset)
        finally:
            os.close(fd)
        if len(data) != job.size:
            raise short_read(job.file, job.rel, job.offset + job.size)
        return data

    def read_into(self, job: Job, buf: memoryview) -> None:
        fd = os.open(job.file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            n = os.preadv(fd, [buf], job.offset)
        finally:
            os.close(fd)
        if n != job.size:
            raise short_read(job.file, job.rel, job.offset + job.size)

    def close(self) -> None:
        pass
