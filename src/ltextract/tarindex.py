"""Where each member's bytes lie: a header-only scan of the tars (indexfile.py persists it).

The train tar is an outer tar of class tars; members of a class tar are located by
absolute offset in the outer file, so extraction never opens the nested tars at all.
"""
from __future__ import annotations

import hashlib
import mmap
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from ltextract import multipart
from ltextract.base import OFFICIAL_SIZES, TarError
from ltextract.tarheader import (
    ADLER_MOD, BLOCK, CHKSUM_AS_SPACES, GNU_LONGNAME, GNU_MAGIC, PAX_LOCAL, USTAR_MAGIC, ZERO_BLOCK,
    cstr, decode_name, describe_non_tar, padded, parse_header, parse_pax, pax_size, printable)

FINGERPRINT_BYTES = 4096
Progress = Optional[Callable[[int], None]]
Buffer = Union[bytes, mmap.mmap]
OPEN_END = 1 << 62  # the end of a stream of unknown length: end of input ends the walk there


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
    damage: str = ""

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

def iter_members(buf: Buffer, start: int, end: int, where: str,
                 folder: bytes = b"") -> Iterator[tuple[bytes, int, int]]:
    """(name, payload offset, size) of each regular file in the tar at buf[start:end]; names are
    raw bytes without leading "./" and without `folder` (the class folder, b"<wnid>/").

    GNU long names and PAX records apply to the member that follows them; directories,
    links, devices and FIFOs are skipped without being followed. Plain GNU/ustar regular
    members (nearly all of ILSVRC) take an inlined fast path; anything it does not fully
    understand falls through to `parse_header`, so both paths accept exactly the same input.
    """
    pos = start
    long_name: Optional[bytes] = None
    pax: dict[str, str] = {}
    adler32 = zlib.adler32
    while pos < end:
        block = buf[pos:pos + BLOCK]
        if len(block) < BLOCK or pos + BLOCK > end:
            if not block and end == OPEN_END:
                return  # a stream that ends without end-of-archive blocks, as tar(1) accepts
            raise Truncated(where, pos, pos + BLOCK, "header", end)
        if block[156] == 48 and long_name is None and not pax and (block.startswith(GNU_MAGIC, 257)
                                                                   or block.startswith(USTAR_MAGIC, 257)
                                                                   and not block[345]):
            try:
                size = int(block[124:136].rstrip(b"\x00 "), 8)
            except ValueError:
                size = -1
            # (adler32 & 0xFFFF) - 1 is the byte sum mod 65521; see _checksum_base
            base = _CHECKSUMS.get(block[148:156]) or _checksum_base(block[148:156])
            if size >= 0 and base and (base - (adler32(block) & 0xFFFF)) % ADLER_MOD == 0:
                data = pos + BLOCK
                if data + size > end:
                    raise Truncated(where, pos, data + size, decode_name(cstr(block[:100])), end)
                name = block[:100].partition(b"\x00")[0]
                if name[:1] == b"." or folder and name.startswith(folder):
                    name = strip(name, folder)
                yield name, data, size
                pos = data + -(-size // BLOCK) * BLOCK
                continue
        if block == ZERO_BLOCK:
            return
        try:
            header = parse_header(block)
            size = pax_size(pax, header.size) if not header.is_meta else header.size
        except TarError as e:
            raise TarError(f"{where}: header at offset {pos:,}: {e}") from None
        data = pos + BLOCK
        if data + size > end:
            raise Truncated(where, pos, data + size, header.name, end)
        if header.typeflag == GNU_LONGNAME:
            long_name = cstr(buf[data:data + size])
        elif header.typeflag == PAX_LOCAL:
            try:
                pax = parse_pax(buf[data:data + size])
            except TarError as e:
                raise TarError(f"{where}: header at offset {pos:,}: {e}") from None
        elif header.is_meta:
            pass  # global PAX records and long link names do not locate payloads
        else:
            if header.is_regular:
                name = pax.get("path")
                raw = name.encode("utf-8", "surrogateescape") if name else long_name
                yield strip(raw or header.name.encode("utf-8", "surrogateescape"), folder), data, size
            long_name, pax = None, {}
        pos = data + padded(size)


_CHECKSUMS: dict[bytes, int] = {}


def _checksum_base(field: bytes) -> int:
    """For a checksum field: stored value + 1 + its byte sum - the field counted as spaces, or 0.

    A header is valid when this minus (adler32 & 0xFFFF) is 0 mod 65521 (adler32's low half is
    1 + the byte sum). Memoised: a tar's checksums take few distinct values.
    """
    try:
        stored = int(field.rstrip(b"\x00 "), 8)
    except ValueError:
        return 0
    base = stored + 1 + sum(field) - CHKSUM_AS_SPACES + ADLER_MOD  # kept > 0: 0 means invalid
    if len(_CHECKSUMS) < 1 << 17:
        _CHECKSUMS[field] = base
    return base


class Truncated(TarError):
    """A header or payload runs past the end of its tar (`where`); `scan` rewords it with the
    file's context."""

    def __init__(self, where: str, header_at: int, needs: int, what: str, end: int):
        what = printable(what)
        super().__init__(f"{what} (header at offset {header_at:,}) needs bytes up to {needs:,},"
                         f" past the end of its tar at {end:,}")
        self.where, self.header_at, self.needs, self.what, self.end = where, header_at, needs, what, end


def normalise(name: str, wnid: str = "") -> str:
    while name.startswith("./"):
        name = name[2:]
    if wnid and name.startswith(wnid + "/"):
        name = name[len(wnid) + 1:]
    return name


def is_cut(path: Path, size: int, t: Truncated) -> bool:
    """A cut file explains a member running past its end, unless the member lies inside a class
    tar (which the outer scan found whole) or claims more than even the complete file holds."""
    whole = max(size, OFFICIAL_SIZES.get(path.name) or 0)
    return t.end >= size and t.needs - t.header_at <= whole


def truncation_message(path: Path, size: int, t: Truncated) -> str:
    where = t.where
    hint = ""
    official = OFFICIAL_SIZES.get(path.name)
    if official and size != official:
        hint = (f" (the official {path.name} is {official:,} bytes, this file {size:,}:"
                " an incomplete download?)")
    inner = where[len(str(path)):].lstrip(": ")  # the class tar, when the member is in one
    member = f"{inner + ': ' if inner else ''}{t.what} (header at offset {t.header_at:,})"
    if is_cut(path, size, t):
        return (f"{path} is truncated: {member} needs bytes up to {t.needs:,} but the file ends"
                f" at {size:,}{hint}")
    bound = f"past the end of its tar at {t.end:,}" if t.end < size else \
        f"more than the whole file ({size:,} bytes)"
    return f"{path} is corrupt: {member} claims {t.needs - t.header_at - BLOCK:,} bytes, {bound}"


def scan(path: Path, nested: bool, progress: Progress = None) -> ArchiveIndex:
    """Read only the header blocks of `path` (and of each class tar inside it when nested)."""
    size, mtime_ns = multipart.stat(path)
    reader = multipart.open_for_scan(path)
    try:
        check_head(str(path), reader.read(0, BLOCK))
        groups, names, offsets, sizes, damage = _scan_groups(reader, path, nested, progress)
        fingerprint = _fingerprint(reader)
    finally:
        reader.close()
    return ArchiveIndex(path, size, mtime_ns, fingerprint, nested, groups,
                        names, offsets, sizes, damage=damage)


def check_head(label: str, head: bytes) -> None:
    """Fail with a useful message when the first block is not a tar header."""
    if len(head) < BLOCK or head == ZERO_BLOCK:
        if not head.strip(b"\x00") and len(head) == BLOCK:
            raise TarError(f"{label}: holds no members (an empty tar)")
        raise TarError(f"{label} {describe_non_tar(head)}")
    try:
        parse_header(head)
    except TarError:
        raise TarError(f"{label} {describe_non_tar(head)}") from None


def _scan_groups(reader: multipart.ByteReader, path: Path, nested: bool, progress: Progress):
    """Groups, names (each followed by "\n"), offsets and sizes, and the damage message of a
    truncated file (the members before the cut are kept). Names are kept as one buffer,
    joined group by group: a list of 1.3M small bytes objects would cost ~80 MB more."""
    groups: list[Group] = []
    names = bytearray()
    offsets, sizes = array("Q"), array("Q")
    done = 0
    damage = ""
    group_names: list[bytes] = []

    def close_group(group: str, start: int, end: int) -> None:
        if b"\n" in b"\x00".join(group_names):  # names hold no NUL: one check per group
            _drop_newlines(group_names, offsets, sizes)
        if group_names:
            names.extend(b"\n".join(group_names) + b"\n")
        groups.append(Group(group, start, end - start, len(group_names)))

    try:
        buf = reader.map if isinstance(reader, multipart.MappedReader) else multipart.Slices(reader)
        for group, start, end, members in iter_groups(buf, reader.size, nested, str(path)):
            group_names = []
            try:
                for name, offset, size in members:
                    group_names.append(name)
                    offsets.append(offset)
                    sizes.append(size)
            except Truncated:
                _drop_cut(group_names, offsets, sizes, reader.size)
                close_group(group, start, end)
                if end <= reader.size:
                    raise  # the class tar is whole but its members are not: corrupt
                continue  # the class tar itself is cut: the outer walk reports where
            close_group(group, start, end)
            if isinstance(reader, multipart.MappedReader):
                reader.release(start, end)
            if progress:
                progress(end - done)
                done = end
    except Truncated as t:
        damage = truncation_message(path, reader.size, t)
        if not is_cut(path, reader.size, t):
            raise TarError(damage) from None  # a corrupt archive: nothing in it is trusted
    return groups, bytes(names), offsets, sizes, damage


def _drop_cut(names: list[bytes], offsets: array, sizes: array, file_size: int) -> None:
    """Of the members named last (`names`), keep those whose bytes lie wholly before the cut."""
    while names and offsets[-1] + sizes[-1] > file_size:
        names.pop()
        offsets.pop()
        sizes.pop()


GroupMembers = tuple[str, int, int, Iterator[tuple[bytes, int, int]]]


def iter_groups(buf: Buffer, size: int, nested: bool, where: str) -> Iterator[GroupMembers]:
    """(group name, start, end, its members) of a flat tar ("") or of each class tar in a nested
    one. Names are raw and normalised; consume each group's members before the next group,
    which lets `buf` be a forward-only stream."""
    if not nested:
        yield "", 0, size, iter_members(buf, 0, size, where)
        return
    outer = iter_members(buf, 0, size, where)
    while True:
        try:
            raw, offset, length = next(outer)
        except StopIteration:
            return
        except Truncated as t:
            # A class tar cut short by the end of the file: its members before the cut are
            # still whole, so walk them (the walk stops at the cut) before reporting the cut.
            name = normalise(t.what)
            if t.what != "header" and name.endswith(".tar") and "/" not in name and t.needs > size:
                start = t.header_at + BLOCK
                yield name, start, t.needs, iter_members(
                    buf, start, t.needs, f"{where}: {printable(name)}", raw_folder(name[:-4]))
            raise
        name = normalise(decode_name(raw))
        if name.endswith(".tar") and "/" not in name:
            yield name, offset, offset + length, iter_members(
                buf, offset, offset + length, f"{where}: {printable(name)}", raw_folder(name[:-4]))


def raw_folder(wnid: str) -> bytes:
    """The `<wnid>/` folder prefix as raw bytes; names hold any bytes (surrogate-escaped)."""
    return wnid.encode("utf-8", "surrogateescape") + b"/"


def strip(name: bytes, folder: bytes) -> bytes:
    """`normalise` for raw names: leading "./" and then `folder` removed."""
    while name.startswith(b"./"):
        name = name[2:]
    return name[len(folder):] if folder and name.startswith(folder) else name


def _drop_newlines(names: list[bytes], offsets: array, sizes: array) -> None:
    """Drop the members named last (`names`) whose name holds a newline: no list line can name them."""
    first = len(offsets) - len(names)
    keep = [i for i, name in enumerate(names) if b"\n" not in name]
    names[:] = [names[i] for i in keep]
    offsets[first:] = array("Q", (offsets[first + i] for i in keep))
    sizes[first:] = array("Q", (sizes[first + i] for i in keep))


def fingerprint(path: Path) -> str:
    reader = multipart.open_for_scan(path)
    try:
        return _fingerprint(reader)
    finally:
        reader.close()


def _fingerprint(reader: multipart.ByteReader) -> str:
    """Cheap identity beyond size and mtime: hash of the first and last 4 KiB."""
    h = hashlib.sha256()
    h.update(reader.read(0, FINGERPRINT_BYTES))
    h.update(reader.read(max(0, reader.size - FINGERPRINT_BYTES), FINGERPRINT_BYTES))
    return h.hexdigest()[:32]
