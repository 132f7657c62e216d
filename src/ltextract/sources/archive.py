"""One tar archive as a source: a plain tar (the ILSVRC2012 train tar of class tars, the flat
val tar), or a tar split into numbered parts read as one in place. Its images are located
through its header index; a plain tar may also be read in one pass (the stream strategy)."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ltextract.archives import TARS
from ltextract.sources import Indexes, Job, Key, Located, Source, Where
from ltextract.tar import readers
from ltextract.tar.truncation import official_size_hint, short_read

if TYPE_CHECKING:
    from ltextract.tar.index import ArchiveIndex


class TarSource(Source):
    kind = "tar"
    indexed = True
    streamable = True

    @property
    def shape(self) -> str:
        return "tar"

    @property
    def nested(self) -> bool:
        """The train tar holds one tar per class; the val tar holds the images themselves."""
        return self.origin == "train"

    def locate(self, keys: set[Key], indexes: Indexes) -> Located:
        index = indexes.archive(self)
        return Located(locate_in_index(index, keys, self.names_in_tar()),
                       f"{self.path}{official_size_hint(self.path.name, index.size)}", index, index.cut)

    def reader(self) -> "ArchiveReader":
        return ArchiveReader(self.path)


class SplitTarSource(TarSource):
    """`<name>.tar.001`, `.002`, ...: one archive whose offsets span the parts."""
    kind = "multipart"
    streamable = False

    @property
    def shape(self) -> str:
        return f"tar in {len(readers.parts_of(self.path))} parts"

    def inputs(self) -> list[Path]:
        return readers.parts_of(self.path)


class StdinSource(Source):
    """A tar piped in: read once, front to back (the stream strategy), never located."""
    kind = "stdin"
    streamable = True
    seekable = False

    @property
    def nested(self) -> bool:
        return self.origin == "train"

    def describe(self) -> str:
        return f"{self.origin} from stdin (tar)"

    def inputs(self) -> list[Path]:
        return []

    @property
    def label(self) -> str:
        return f"{TARS[self.origin]} from stdin"


class ArchiveReader:
    """Payloads by offset from one archive (a file or its parts), without readahead."""

    def __init__(self, path: Path):
        self.bytes = readers.open_bytes(path)
        if isinstance(self.bytes, readers.FileReader):
            if hasattr(os, "posix_fadvise"):  # what is asked, not its neighbours
                os.posix_fadvise(self.bytes.fd, 0, 0, os.POSIX_FADV_RANDOM)
            self._pread = functools.partial(os.pread, self.bytes.fd)  # one C call per file
        else:
            self._pread = lambda n, offset: self.bytes.read(offset, n)

    def read(self, job: Job) -> bytes:
        data = self._pread(job.size, job.offset)
        if len(data) != job.size:
            raise short_read(job.file, job.rel, job.offset + job.size)
        return data

    def read_into(self, job: Job, buf: memoryview) -> None:
        if isinstance(self.bytes, readers.FileReader):
            n = os.preadv(self.bytes.fd, [buf], job.offset)
        else:
            data = self.bytes.read(job.offset, job.size)
            n = len(data)
            buf[:n] = data
        if n != job.size:
            raise short_read(job.file, job.rel, job.offset + job.size)

    def close(self) -> None:
        self.bytes.close()


def locate_in_index(index: "ArchiveIndex", keys: set[Key],
                    names: Optional[Callable[[str, str], tuple[str, ...]]] = None) -> dict[Key, Where]:
    """(wnid, file) -> where. Nested tars hold class tars named <wnid>.tar; a flat tar (val)
    holds every file at top level, so its wnid comes from the list; `names` gives the member
    names a key may have in a flat tar (default: the file name alone).

    Each class tar's names go into a dict built in C, and only the wanted keys are looked up in
    Python: a quarter less time than a Python loop over all 1.25M names. A flat tar found by
    `names` (Places365's 1.8M members, a few percent wanted) is filtered against the wanted
    names instead: a fifth of the time of a dict of every member."""
    members = index.names.split(b"\n")
    if names is not None:
        return _locate_by_names(index, members, keys, names)
    if not index.nested:  # a flat tar: one group
        by_group = {"": list(keys)}
    else:
        by_wnid: dict[str, list[Key]] = {}
        for key in keys:  # by wnid first: 1,000 group names made, not one per key
            by_wnid.setdefault(key[0], []).append(key)
        by_group = {f"{wnid}.tar": ks for wnid, ks in by_wnid.items()}
    tar, offsets, sizes = index.path, index.offsets, index.sizes
    found: dict[Key, Where] = {}
    first = 0
    for group in index.groups:
        wanted = by_group.get(group.name)
        if wanted:
            end = first + group.count
            at = dict(zip(members[first:end], range(first, end))).get  # the last copy wins, as in tar
            for key in wanted:
                i = at(key[1].encode("utf-8", "surrogateescape"))
                if i is not None:
                    found[key] = (tar, offsets[i], sizes[i])
        first += group.count
    return found


def _locate_by_names(index: "ArchiveIndex", members: list[bytes], keys: set[Key],
                     names: Callable[[str, str], tuple[str, ...]]) -> dict[Key, Where]:
    """A flat tar's members named as `names` says; the last copy of a name wins, as in tar
    (and as a stream, which writes each copy as it passes)."""
    prefixes = {m.partition(b"/")[0] + b"/" for m in (members[0], members[-2]) if m}  # (a blob ends in "\n")
    want: dict[bytes, Key] = {}
    for key in keys:
        for name in names(*key):
            raw = name.encode("utf-8", "surrogateescape")
            if len(prefixes) != 1 or raw.startswith(*prefixes):  # the shape this tar is: one name per key
                want[raw] = key
    tar, offsets, sizes = index.path, index.offsets, index.sizes
    hits = [i for i, name in enumerate(members) if name in want]
    return {want[members[i]]: (tar, offsets[i], sizes[i]) for i in hits}
