"""Tar header blocks: field layout, number encodings and the ustar / GNU / PAX variants.

Only what locating member bytes needs is decoded; all block arithmetic lives here.
Layout (POSIX.1-1988 ustar, offsets in bytes):

    name 0:100   mode 100:108  uid 108:116  gid 116:124  size 124:136  mtime 136:148
    chksum 148:156  typeflag 156  linkname 157:257  magic 257:263  version 263:265
    uname 265:297  gname 297:329  devmajor 329:337  devminor 337:345  prefix 345:500
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from ltextract.errors import TarError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)

NAME = slice(0, 100)
SIZE = slice(124, 136)
CHKSUM = slice(148, 156)
TYPEFLAG = 156
LINKNAME = slice(157, 257)
MAGIC = slice(257, 263)
PREFIX = slice(345, 500)

USTAR_MAGIC = b"ustar\x00"  # POSIX ustar and PAX
GNU_MAGIC = b"ustar "  # GNU tar ("ustar  \0" with the version field)

REGULAR = frozenset(b"07\x00")  # '0', contiguous '7', and the pre-POSIX NUL flag
GNU_LONGNAME = ord("L")
GNU_LONGLINK = ord("K")
PAX_LOCAL = ord("x")
PAX_GLOBAL = ord("g")
SOLARIS_PAX = ord("X")
#: Header types whose data describe the next member rather than being one.
META = frozenset((GNU_LONGNAME, GNU_LONGLINK, PAX_LOCAL, PAX_GLOBAL, SOLARIS_PAX))

# The checksum counts its own field as eight spaces.
CHKSUM_AS_SPACES = 8 * ord(" ")
ADLER_MOD = 65521


def padded(size: int) -> int:
    """Bytes a payload of `size` occupies: whole blocks."""
    return -(-size // BLOCK) * BLOCK


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    size: int
    typeflag: int

    @property
    def is_regular(self) -> bool:
        return self.typeflag in REGULAR

    @property
    def is_meta(self) -> bool:
        return self.typeflag in META


def parse_number(field: bytes) -> int:
    """Octal ASCII (NUL/space padded) or GNU base-256 (high bit of the first byte set)."""
    if field and field[0] & 0x80:
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * len(field) - 8)) if field[0] & 0x40 else n
    text = field.split(b"\x00", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError(f"bad number field {bytes(field)!r}") from None


def _checksum_ok(block: bytes) -> bool:
    """Compare the stored checksum with the byte sum, the checksum field counted as spaces.

    The fast path uses zlib.adler32, whose low half is (1 + sum of bytes) mod 65521: about
    20x cheaper than sum() in Python, and a false match needs a corruption that shifts the
    sum by exactly 65521. Old tars that summed signed bytes take the slow path.
    """
    try:
        stored = parse_number(block[CHKSUM])
    except TarError:
        return False
    field_sum = sum(block[CHKSUM])
    unsigned_mod = ((zlib.adler32(block) & 0xFFFF) - 1 - field_sum + CHKSUM_AS_SPACES)
    if (stored - unsigned_mod) % ADLER_MOD == 0:
        return True
    signed = sum(b - 256 if b > 127 else b for b in block)
    signed -= sum(b - 256 if b > 127 else b for b in block[CHKSUM])
    return stored == signed + CHKSUM_AS_SPACES


def cstr(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def parse_header(block: bytes) -> Header:
    """Decode one non-zero header block; raise TarError when it is not a valid tar header."""
    if not _checksum_ok(block):
        raise TarError("bad header checksum (not a tar header, or corrupt)")
    name = cstr(block[NAME])
    if block[MAGIC] == USTAR_MAGIC:
        prefix = cstr(block[PREFIX])
        if prefix:
            name = prefix + b"/" + name
    size = parse_number(block[SIZE])
    if size < 0:  # would move the scan backwards: a loop, never an answer
        raise TarError(f"negative size {size} in header")
    return Header(decode_name(name), size, block[TYPEFLAG])


def decode_name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def printable(name: str) -> str:
    """A member name fit for a one-line message: newlines and other control characters escaped."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def parse_pax(data: bytes) -> dict[str, str]:
    """PAX extended header records: '<len> <key>=<value>\\n', len counting the whole record."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # padding some writers leave
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise TarError("malformed PAX header record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarError("malformed PAX header record length") from None
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1:end] != b"\n":
            raise TarError("malformed PAX header record")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq:
            raise TarError("malformed PAX header record")
        records[key.decode("utf-8", "surrogateescape")] = decode_name(value)
        pos = end
    return records


def pax_size(records: dict[str, str], default: int) -> int:
    if "size" not in records:
        return default
    value = records["size"]
    if not (value.isascii() and value.isdigit()) or len(value) > 20:  # int() takes "-5", "1_0"
        raise TarError(f"bad PAX size {value[:40]!r}")
    return int(value)


def describe_non_tar(head: bytes) -> str:
    """What a file that fails as a tar most likely is, for the error message."""
    if not head:
        return "is empty"
    if head[:2] == b"\x1f\x8b":
        return "is a gzip file, not a tar (decompress it first)"
    if head[:3] == b"BZh":
        return "is a bzip2 file, not a tar (decompress it first)"
    if head[:6] == b"\xfd7zXZ\x00":
        return "is an xz file, not a tar (decompress it first)"
    if head[:4] == b"PK\x03\x04":
        return "is a zip file, not a tar"
    if head.lstrip()[:1] == b"<":
        return "looks like an HTML/XML page, not a tar (a failed download?)"
    return "is not a tar file (no valid header at offset 0)"
