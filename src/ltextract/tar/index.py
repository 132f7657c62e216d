"""Where each member's bytes lie: a header-only scan of the tars (indexfile.py persists it).

The train tar is an outer tar of class tars; members of a class tar are located by
absolute offset in the outer file, so extraction never opens the nested tars at all.
"""
from __future__ import annotations

import hashlib
import os
from array import array
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from ltextract.errors import TarError
from ltextract.tar import readers
from ltextract.tar.header import BLOCK, decode_name
from ltextract.tar.truncation import Truncated, is_cut, truncation_message
from ltextract.tar.walk import Buffer, check_head, collect_members, group_where, iter_groups
from ltextract.workers import can_fork, fork_map

FINGERPRINT_BYTES = 4096
Progress = Optional[Callable[[int], None]]


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # normalised: leading "./" and a "<wnid>/" folder removed
    offset: int  # absolute offset of the payload in the archive file
    size: int


@dataclass(frozen=True)
class Group:
    """One tar of members: a class tar inside the train tar, or the flat val tar itself ("")."""
    name: str
    offset: int
    size: int
    count: int


@dataclass
class ArchiveIndex:
    path: Path
    size: int
    mtime_ns: int
    fingerprint: str
    nested: bool
    groups: list[Group]
    names: bytes  # every member name followed by "\n", in group order
    offsets: array
    sizes: array
    from_cache: bool = False
    #: Why the scan stopped early (a truncated file): the index then holds only the members
    #: whose bytes lie wholly before the cut. Never cached.
    cut: str = ""

    @property
    def members(self) -> int:
        return len(self.offsets)

    def iter_groups(self) -> Iterator[tuple[Group, list[Member]]]:
        """Members group by group; names are decoded one group at a time to keep memory flat."""
        first = 0
        name_pos = 0
        for group in self.groups:
            members = []
            for i in range(first, first + group.count):
                end = self.names.index(b"\n", name_pos)
                members.append(Member(decode_name(self.names[name_pos:end]),
                                      self.offsets[i], self.sizes[i]))
                name_pos = end + 1
            yield group, members
            first += group.count


# --- scanning -------------------------------------------------------------------------

def scan(path: Path, nested: bool, progress: Progress = None) -> ArchiveIndex:
    """Read only the header blocks of `path` (and of each class tar inside it when nested)."""
    size, mtime_ns = readers.stat(path)
    reader = readers.open_for_scan(path)
    try:
        check_head(str(path), reader.read(0, BLOCK))
        groups, names, offsets, sizes, cut = _scan_groups(reader, path, nested, progress)
        fingerprint = _fingerprint(reader)
    finally:
        reader.close()
    return ArchiveIndex(path, size, mtime_ns, fingerprint, nested, groups,
                        names, offsets, sizes, cut=cut)


def _scan_groups(reader: readers.ByteReader, path: Path, nested: bool, progress: Progress):
    """Groups, names (each followed by "\n"), offsets and sizes, and why a
    truncated file (the members before the cut are kept).

    The outer walk finds the class tars (1,000 headers); their members are then scanned in
    worker processes, which parse in parallel and keep several header reads in flight on a cold
    disk. Results are assembled in file order, so the outcome equals a serial scan's."""
    groups: list[Group] = []
    names: list[bytes] = []  # joined once at the end: extending one buffer copies it over and over
    offsets, sizes = array("Q"), array("Q")
    done = 0
    cut = ""
    buf = reader.map if isinstance(reader, readers.MappedReader) else readers.Slices(reader)
    spans: list[tuple[str, int, int]] = []
    outer_cut: Optional[Truncated] = None
    try:
        for group, start, end, _members in iter_groups(buf, reader.size, nested, str(path)):
            spans.append((group, start, end))
    except Truncated as t:
        outer_cut = t
    # closing(): an exception here (Ctrl-C, SIGTERM) must stop the workers now, not when the
    # generator is collected, which may come after interpreter exit waits on them forever.
    try:
        with closing(_scan_spans(buf, reader, str(path), spans)) as scanned:
            for span in scanned:
                if span.error is not None:
                    raise span.error
                names.append(span.names)
                offsets.extend(span.offsets)
                sizes.extend(span.sizes)
                groups.append(Group(span.group, span.start, span.end - span.start, len(span.offsets)))
                if span.cut is not None:
                    if span.end <= reader.size:
                        raise span.cut  # the class tar is whole but its members are not: corrupt
                    continue  # the class tar itself is cut: the outer walk reports where
                if progress:
                    progress(span.end - done)
                    done = span.end
        if outer_cut is not None:
            raise outer_cut
    except Truncated as t:
        cut = truncation_message(path, reader.size, t)
        if not is_cut(path, reader.size, t):
            raise TarError(cut) from None  # a corrupt archive: nothing in it is trusted
    return groups, b"".join(names), offsets, sizes, cut


@dataclass
class Span:
    """One group's members, as a (worker) scan found them; `cut` or `error` ends the scan there."""
    group: str
    start: int
    end: int
    names: bytes = b""  # each followed by "\n"
    offsets: array = field(default_factory=lambda: array("Q"))
    sizes: array = field(default_factory=lambda: array("Q"))
    cut: Optional[Truncated] = None  # a member runs past the group's end (or the file's)
    error: Optional[TarError] = None  # a header that is not a tar header


#: Fewer class tars than this are scanned in-process: forking costs more than it saves.
PARALLEL_MIN_SPANS = 16
#: Workers: processes parse in parallel and, on a cold disk, keep that many header reads in
#: flight (each one a storage round trip); beyond the cores they only help the cold case, so a
#: tar already in the page cache gets one per core (at least 2).
SCAN_WORKERS = min(32, max(8, os.cpu_count() or 1))
TASKS_PER_WORKER = 4  # contiguous runs of class tars per worker: evens out their sizes
_shared: Optional[tuple[Buffer, readers.ByteReader, str]] = None  # inherited by forked workers


def _scan_spans(buf: Buffer, reader: readers.ByteReader, where: str,
                spans: list[tuple[str, int, int]]) -> Iterator[Span]:
    """The members of each span, in order; in forked worker processes when there are many."""
    workers = min(SCAN_WORKERS, len(spans))
    if len(spans) < PARALLEL_MIN_SPANS or workers < 2 or not can_fork():
        for group, start, end in spans:
            yield _scan_span(buf, reader, where, group, start, end)
        return
    global _shared
    _shared = (buf, reader, where)
    if _in_page_cache(reader, spans):  # no reads to overlap: more processes than cores take turns
        workers = min(workers, max(2, os.cpu_count() or 1))
    step = -(-len(spans) // (workers * TASKS_PER_WORKER))
    tasks = [spans[i:i + step] for i in range(0, len(spans), step)]
    try:
        for result in fork_map(_scan_task, tasks, workers, f"{where}: a header-scan"):
            yield from result
    finally:
        _shared = None


#: Places sampled by `_in_page_cache`: the middle of as many class tars, spread over the file.
CACHE_PROBES = 32


def _in_page_cache(reader: readers.ByteReader, spans: list[tuple[str, int, int]]) -> bool:
    """Whether the tar looks wholly in the page cache (read before, a warm rescan): a one-byte
    read that must not wait for storage (RWF_NOWAIT) succeeds in the middle of each of
    CACHE_PROBES class tars. Anything else (a cold or partly cold file, a filesystem or
    kernel without RWF_NOWAIT, a split tar) counts as not cached."""
    if not isinstance(reader, readers.MappedReader) or not hasattr(os, "RWF_NOWAIT"):
        return False
    byte = bytearray(1)
    for i in range(0, len(spans), max(1, len(spans) // CACHE_PROBES)):
        _, start, end = spans[i]
        try:
            if os.preadv(reader.fd, [byte], (start + end) // 2, os.RWF_NOWAIT) != 1:
                return False
        except OSError:  # EAGAIN: not cached; EOPNOTSUPP: cannot tell
            return False
    return True


def _scan_task(spans: list[tuple[str, int, int]]) -> list[Span]:
    assert _shared is not None, "runs in a worker forked by _scan_spans"
    buf, reader, where = _shared
    found = []
    for group, start, end in spans:
        found.append(_scan_span(buf, reader, where, group, start, end))
        if found[-1].cut or found[-1].error:
            break  # what follows is never looked at
    return found


def _scan_span(buf: Buffer, reader: readers.ByteReader, where: str,
               group: str, start: int, end: int) -> Span:
    span = Span(group, start, end)
    names: list[bytes] = []
    try:
        collect_members(buf, start, end, *group_where(where, group), names, span.offsets, span.sizes)
    except Truncated as t:
        _drop_cut(names, span.offsets, span.sizes, reader.size)
        span.cut = t
    except TarError as e:
        span.error = e
    if names:
        span.names = b"\n".join(names) + b"\n"
        if span.names.count(b"\n") != len(names):  # one check per group
            _drop_newlines(names, span.offsets, span.sizes)
            span.names = b"\n".join(names) + b"\n" if names else b""
    if isinstance(reader, readers.MappedReader):
        reader.release(start, end)
    return span


def _drop_cut(names: list[bytes], offsets: array, sizes: array, file_size: int) -> None:
    """Keep the members whose bytes lie wholly before the cut (the last ones may not)."""
    while names and offsets[-1] + sizes[-1] > file_size:
        names.pop()
        offsets.pop()
        sizes.pop()


def _drop_newlines(names: list[bytes], offsets: array, sizes: array) -> None:
    """Drop the members whose name holds a newline: no list line can name them."""
    keep = [i for i, name in enumerate(names) if b"\n" not in name]
    names[:] = [names[i] for i in keep]
    offsets[:] = array("Q", (offsets[i] for i in keep))
    sizes[:] = array("Q", (sizes[i] for i in keep))


def fingerprint(path: Path) -> str:
    reader = readers.open_for_scan(path)
    try:
        return _fingerprint(reader)
    finally:
        reader.close()


def _fingerprint(reader: readers.ByteReader) -> str:
    """Cheap identity beyond size and mtime: hash of the first and last 4 KiB."""
    h = hashlib.sha256()
    h.update(reader.read(0, FINGERPRINT_BYTES))
    h.update(reader.read(max(0, reader.size - FINGERPRINT_BYTES), FINGERPRINT_BYTES))
    return h.hexdigest()[:32]
