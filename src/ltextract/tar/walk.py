"""Walking a tar's header blocks over a buffer: the members of a flat tar, or of each class tar
inside the train tar, located by absolute offset.

`buf` is anything sliceable by absolute offset: a mapping of the file (the index scan), a reader
of a split tar's parts, or a forward-only stream (the stream strategy), so every strategy finds
exactly the same members.
"""
from __future__ import annotations

import mmap
import struct
import zlib
from array import array
from typing import Iterator, Optional, Union

from ltextract.errors import TarError
from ltextract.tar.header import (
    ADLER_MOD, BLOCK, CHKSUM_AS_SPACES, GNU_LONGNAME, GNU_MAGIC, PAX_LOCAL, USTAR_MAGIC, ZERO_BLOCK,
    cstr, decode_name, describe_non_tar, padded, parse_header, parse_pax, pax_size, printable)
from ltextract.tar.truncation import Truncated

Buffer = Union[bytes, mmap.mmap]
OPEN_END = 1 << 62  # the end of a stream of unknown length: end of input ends the walk there


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
    if pos > end:
        # The last member's data is whole but the zero padding after it is not: tar(1) reports
        # "Unexpected EOF". (A stream of unknown length never gets here: OPEN_END is unreachable,
        # the end of input decides.) `block` is still that member's header.
        raise Truncated(where, pos - padded(size) - BLOCK, pos, decode_name(cstr(block[:100])), end,
                        padding=True)


#: What `collect_members` reads of a header, straight from the buffer: name, the size's first 11
#: digits and the byte after them, checksum, typeflag, magic, the ustar prefix's first byte.
_PLAIN = struct.Struct("100s24x11sc12x8sc100x6s82xB")


def collect_members(buf: Buffer, start: int, end: int, where: str, folder: bytes,
                    names: list[bytes], offsets: array, sizes: array) -> None:
    """Append what `iter_members` yields to `names`, `offsets` and `sizes`: the same members and
    the same errors (raised once the members before them are appended), without a generator
    step per member: the index scan's loop, a quarter faster.

    Plain GNU/ustar regular members with an 11-digit size are read here, their fields unpacked
    from the mapping in place; any other header is left to `iter_members`, one member at a
    time, so both accept exactly the same input."""
    if not isinstance(buf, (bytes, mmap.mmap)):  # no buffer protocol (a split tar's parts)
        for name, data, size in iter_members(buf, start, end, where, folder):
            names.append(name)
            offsets.append(data)
            sizes.append(size)
        return
    add_name, add_offset, add_size = names.append, offsets.append, sizes.append
    unpack, adler32, known = _PLAIN.unpack_from, zlib.adler32, _CHECKSUMS.get
    last = min(end, len(buf)) - BLOCK  # the last position a whole header can start at
    pos, size = start, 0
    stripped = (b".", folder) if folder else b"."  # names that `strip` may shorten
    with memoryview(buf) as view:
        while pos < end:
            if pos <= last:
                name, digits, after, chksum, typeflag, magic, prefix = unpack(buf, pos)
                if typeflag == b"0" and (magic == GNU_MAGIC or magic == USTAR_MAGIC and not prefix) \
                        and (after == b"\x00" or after == b" "):
                    try:
                        size = int(digits, 8)
                    except ValueError:
                        size = -1
                    base = known(chksum) or _checksum_base(chksum)
                    data = pos + BLOCK
                    if 0 <= size <= end - data and base \
                            and (base - (adler32(view[pos:data]) & 0xFFFF)) % ADLER_MOD == 0:
                        name = name.partition(b"\x00")[0]
                        if name.startswith(stripped):
                            name = strip(name, folder)
                        add_name(name)
                        add_offset(data)
                        add_size(size)
                        pos = data + ((size + BLOCK - 1) & -BLOCK)
                        continue
            for name, data, size in iter_members(buf, pos, end, where, folder):
                add_name(name)
                add_offset(data)
                add_size(size)
                pos = data + padded(size)
                break
            else:
                return  # the end of the tar (or an error, raised by iter_members)
    if pos > end:  # the padding after the last payload runs past the end: as iter_members
        header = pos - padded(size) - BLOCK
        raise Truncated(where, header, pos, decode_name(cstr(buf[header:header + 100])), end,
                        padding=True)


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


def normalise(name: str, wnid: str = "") -> str:
    while name.startswith("./"):
        name = name[2:]
    if wnid and name.startswith(wnid + "/"):
        name = name[len(wnid) + 1:]
    return name


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


GroupMembers = tuple[str, int, int, Iterator[tuple[bytes, int, int]]]


def iter_groups(buf: Buffer, size: int, nested: bool, where: str) -> Iterator[GroupMembers]:
    """(group name, start, end, its members) of a flat tar ("") or of each class tar in a nested
    one. Names are raw and normalised; consume each group's members before the next group,
    which lets `buf` be a forward-only stream."""
    if not nested:
        yield "", 0, size, group_members(buf, where, "", 0, size)
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
            if t.what != "header" and name.endswith(".tar") and "/" not in name and t.needs > size \
                    and not t.padding:  # (a class tar whose padding alone is cut was yielded whole)
                start = t.header_at + BLOCK
                yield name, start, t.needs, group_members(buf, where, name, start, t.needs)
            raise
        name = normalise(decode_name(raw))
        if name.endswith(".tar") and "/" not in name:
            yield name, offset, offset + length, group_members(buf, where, name, offset,
                                                               offset + length)


def group_members(buf: Buffer, where: str, group: str, start: int,
                  end: int) -> Iterator[tuple[bytes, int, int]]:
    """The members of one group: the flat tar itself ("") or a class tar "<wnid>.tar"."""
    return iter_members(buf, start, end, *group_where(where, group))


def group_where(where: str, group: str) -> tuple[str, bytes]:
    """How a group's members are walked: the label for messages and the folder to strip."""
    if not group:
        return where, b""
    return f"{where}: {printable(group)}", raw_folder(group[:-4])


def raw_folder(wnid: str) -> bytes:
    """The `<wnid>/` folder prefix as raw bytes; names hold any bytes (surrogate-escaped)."""
    return wnid.encode("utf-8", "surrogateescape") + b"/"


def strip(name: bytes, folder: bytes) -> bytes:
    """`normalise` for raw names: leading "./" and then `folder` removed."""
    while name.startswith(b"./"):
        name = name[2:]
    return name[len(folder):] if folder and name.startswith(folder) else name
