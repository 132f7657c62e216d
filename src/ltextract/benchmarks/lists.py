"""Split lists: parse and validate them line by line (errors cite `file:line`), and check a
published one against its pinned totals."""
from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from itertools import repeat
from typing import Iterable, NamedTuple, Optional, Sequence

from ltextract.benchmarks import Pin, SplitSpec
from ltextract.benchmarks.classes import label_of
from ltextract.errors import ListError
from ltextract.files import gc_paused

#: Longer than any sane line (published ones are < 60 bytes); stops a huge blob before any regex.
MAX_LINE = 1024
#: NAME_MAX on common file systems; every file must be creatable under OUT.
MAX_NAME = 255
#: Far above any list (even a full 1.28M-image ImageNet list), low enough to keep memory bounded.
MAX_BYTES = 64 << 20
MAX_LINES = 4_000_000


class Entry(NamedTuple):
    """One image of a list; `line` is 1-based so later stages can still cite `file:line`.
    A NamedTuple: as immutable as a frozen dataclass, made 3x faster (a list has 10^5)."""

    origin: str  # the list path's first folder: which source images ("train" | "val")
    wnid: str
    file: str
    label: int
    line: int

    @property
    def path(self) -> str:
        return f"{self.origin}/{self.wnid}/{self.file}"


@dataclass(frozen=True)
class SplitList:
    split: str
    entries: list[Entry]
    sha256: str
    source: str  # path or URL the bytes came from
    published: bool  # sha256 equals the pin
    canonical_sha256: str  # what the list says, hashed as `canonical_sha256` does


# The shape of every well-formed line; anything else goes to _diagnose for a precise message.
# File names: printable ASCII without '/' or '\\'; one that starts as ILSVRC train files do,
# `<wnid>_`, starts with its folder's wnid (the lookahead: 5% of the pattern's time, against
# three times that checked column by column); the label: a plain decimal integer.
_LINE = re.compile(r"(train|val)/(n[0-9]{8})/(?!\.\.?[ \t])(?=\2_|(?!n[0-9]{8}_))"
                   r"([!-.0-\[\]-~]{1,%d})[ \t]+(0|[1-9][0-9]{0,3})\r?" % MAX_NAME)
#: `_LINE` at every line of a text: as many matches as lines means every line is well-formed.
_LINES = re.compile(f"^{_LINE.pattern}$", re.MULTILINE)
_WNID = re.compile(r"n[0-9]{8}")
_NAMED_WNID = re.compile(r"(n[0-9]{8})_")  # an ILSVRC train file's name: <wnid>_<n>.JPEG
_LABEL = re.compile(r"0|[1-9][0-9]*")


def _show(s: str, limit: int = 40) -> str:
    """Quote a piece of input for a one-line message, whatever it contains."""
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _diagnose(line: str) -> str:
    """Why a line that failed the fast pattern is wrong, in the words a user needs."""
    body = line[:-1] if line.endswith("\r") else line
    odd = next((c for c in body if not (" " <= c <= "~" or c == "\t")), None)
    if odd is not None:
        kind = "control" if odd.isascii() else "non-ASCII"
        return f"{kind} character U+{ord(odd):04X} in {_show(body)}; names must be printable ASCII"
    if body[:1].isspace():
        return "line starts with whitespace"
    if body[-1:].isspace():
        return "line ends with whitespace"
    fields = body.split()
    if len(fields) != 2:
        return f"expected '<top>/<wnid>/<file> <label>', got {len(fields)} field(s): {_show(body)}"
    path, label = fields
    if path.startswith("/"):
        return f"absolute path {_show(path)}"
    parts = path.split("/")
    if ".." in parts:
        return f"path {_show(path)} contains '..'"
    if "" in parts:
        return f"path {_show(path)} has an empty component"
    if len(parts) != 3:
        return f"path {_show(path)} has {len(parts)} parts, expected <top>/<wnid>/<file>"
    origin, wnid, name = parts
    if origin not in ("train", "val"):
        return f"top folder {_show(origin)} is neither 'train' nor 'val'"
    if not _WNID.fullmatch(wnid):
        return f"{_show(wnid)} is not a wnid (n + 8 digits)"
    if name == ".":
        return "file name '.' is not a file"
    if len(name) > MAX_NAME:
        return f"file name is {len(name)} characters long (limit {MAX_NAME})"
    if "\\" in name:
        return f"file name {_show(name)} contains a backslash"
    if not _LABEL.fullmatch(label):
        return f"label {_show(label)} is not a plain non-negative integer"
    if len(label) > 4:  # longer than the pattern takes
        return f"label {label} is not one of the {len(label_of())} ILSVRC2012 labels"
    if _label_strings().get(wnid) != label:
        return _bad_label(wnid, label)  # (as `_parse_lines` says it of a line the pattern takes)
    named = _NAMED_WNID.match(name)
    if named and named.group(1) != wnid:
        return f"file name's wnid {named.group(1)} differs from its folder {wnid}"
    return f"{_show(body)} is not a list line"


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(data: bytes, name: str) -> str:
    """Bytes to text, refusing what is clearly not a list (huge, binary, compressed, HTML)."""
    if len(data) > MAX_BYTES:
        raise ListError(f"{name}: {len(data):,} bytes is too large for a list"
                        f" (limit {MAX_BYTES:,})")
    lines = data.count(b"\n")
    if lines > MAX_LINES:
        raise ListError(f"{name}: {lines:,} lines is too many for a list (limit {MAX_LINES:,})")
    if data[:2] == b"\x1f\x8b":
        raise ListError(f"{name}: not a text list: it is gzip-compressed")
    nul = data.find(b"\0")
    if nul >= 0:
        raise ListError(f"{name}:{_line_at(data, nul)}: not a text list: NUL byte")
    try:
        text = data.decode("utf-8-sig")  # a leading BOM (Windows editors) is harmless
    except UnicodeDecodeError as e:
        raise ListError(f"{name}:{_line_at(data, e.start)}: not a text list:"
                        f" byte 0x{data[e.start]:02x} is not UTF-8") from None
    head = text[:1024].lstrip().lower()
    if head.startswith(("<!doctype", "<html", "<head", "<body")):
        raise ListError(f"{name}: looks like an HTML page, not a list")
    if head.startswith("<?xml"):  # e.g. an S3 or GCS error document
        raise ListError(f"{name}: looks like an XML document, not a list")
    return text


def parse_list(data: bytes, name: str) -> list[Entry]:
    """Validate every line of a list and return its entries; errors cite `name:line: what`."""
    with gc_paused():
        return _parse(_decode(data, name), name)


@functools.lru_cache(maxsize=1)
def _label_strings() -> dict[str, str]:
    """wnid -> its label as the list spells it, so the hot loop compares strings, not ints."""
    return {w: str(i) for w, i in label_of().items()}


def _bad_label(wnid: str, label: str) -> str:
    index = label_of().get(wnid)
    if index is None:
        return f"{wnid} is not one of the {len(label_of())} ILSVRC2012 wnids"
    return f"label {label} does not match {wnid} (its index is {index})"


def _parse(text: str, name: str) -> list[Entry]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    entries = _parse_clean(text, lines)
    return _parse_lines(lines, name) if entries is None else entries


def _parse_clean(text: str, lines: list[str]) -> Optional[list[Entry]]:
    """The entries of a list without a single fault, checked a whole column at a time (a third
    less time than line by line); None when anything is off: `_parse_lines` then says what."""
    if not lines or max(map(len, lines)) > MAX_LINE:
        return None
    rows = _LINES.findall(text)
    if len(rows) != len(lines):  # a line `_LINE` does not match
        return None
    origins, wnids, files, labels = zip(*rows)
    if len(set(origins)) != 1 or tuple(map(_label_strings().get, wnids)) != labels:
        return None
    if len(set(files)) != len(files) and len(set(zip(wnids, files))) != len(files):
        return None
    wnid, label = (d.__getitem__ for d in _shared())  # both checked above: every key is there
    return list(map(Entry, repeat(origins[0]), map(wnid, wnids), files, map(label, labels),
                    range(1, len(lines) + 1)))


@functools.lru_cache(maxsize=1)
def _shared() -> tuple[dict[str, str], dict[str, int]]:
    """One str per wnid and one int per label, for the entries of every list to share: 10^5
    fewer objects per list, and later stages hash and compare the same 1000 (a twentieth less
    time from lists to manifests)."""
    return {w: w for w in label_of()}, {str(i): i for i in range(len(label_of()))}


def _parse_lines(lines: list[str], name: str) -> list[Entry]:
    match = _LINE.fullmatch
    want = _label_strings()
    entries: list[Entry] = []
    append = entries.append
    seen: dict[str, int] = {}
    first: Optional[str] = None  # the origin of the first entry: every line must share it
    blank = 0  # first blank line of the current run; an entry after it is an error
    for no, line in enumerate(lines, 1):
        if len(line) > MAX_LINE:
            raise ListError(f"{name}:{no}: line is {len(line):,} characters long"
                            f" (limit {MAX_LINE:,}); not a list?")
        m = match(line)
        if m is None:
            if not line.strip():
                blank = blank or no
                continue
            raise ListError(f"{name}:{no}: {_diagnose(line)}")
        origin, wnid, file, label = m.groups()
        if want.get(wnid) != label:
            raise ListError(f"{name}:{no}: {_bad_label(wnid, label)}")
        if origin != first:
            if first is not None:
                raise ListError(f"{name}:{no}: top folder {origin} differs from {first} on line"
                                f" {entries[0].line}; one list points into one tar")
            first = origin
        earlier = seen.setdefault(m.group(1, 2, 3), no)
        if earlier != no:
            raise ListError(f"{name}:{no}: duplicate of line {earlier} ({origin}/{wnid}/{file})")
        if blank:
            raise ListError(f"{name}:{blank}: blank line before the end of the list")
        append(Entry(origin, wnid, file, int(label), no))
    if not entries:
        raise ListError(f"{name}: no entries")
    return entries


def canonical_sha256(pairs: Iterable[tuple[str, int]]) -> str:
    """sha256 of a list written as '<path> <label>\\n' lines: what a list *says*, independent of
    CRLF, tabs, a BOM or a missing final newline. Equals the raw sha256 for the published lists."""
    h = hashlib.sha256()
    for path, label in pairs:
        h.update(f"{path} {label}\n".encode())
    return h.hexdigest()


def list_canonical_sha256(data: bytes, entries: Sequence[Entry], digest: str) -> str:
    """`canonical_sha256` of a parsed list whose raw sha256 is `digest`: that digest itself when
    the bytes are the canonical lines already (no BOM, CR or tab; one newline and one space per
    entry, so no blank line and single spaces; each line matched `_LINE`, whose labels have no
    leading zero), as the published lists are; hashed anew otherwise."""
    if not data.startswith(b"\xef\xbb\xbf") and data.endswith(b"\n") and b"\t" not in data \
            and b"\r" not in data and data.count(b"\n") == len(entries) == data.count(b" "):
        return digest
    return canonical_sha256((e.path, e.label) for e in entries)


def check_split(spec: SplitSpec, entries: Sequence[Entry], name: str) -> None:
    """A split's images live in one particular set: ImageNet-LT's val in train/, test in val/."""
    if entries and entries[0].origin != spec.origin:
        raise ListError(f"{name}: the {spec.name} list must point into {spec.origin}/, but line"
                        f" {entries[0].line} is {entries[0].path}")


def check_totals(pin: Pin, entries: Sequence[Entry], name: str) -> None:
    """The published totals; a list that passes its sha256 but not these means a wrong pin."""
    if len(entries) != pin.lines:
        raise ListError(f"{name}: {len(entries):,} entries, the published {pin.split} list has"
                        f" {pin.lines:,}")
    counts = Counter(e.wnid for e in entries)
    if len(counts) != len(label_of()):
        raise ListError(f"{name}: {len(counts)} classes, expected {len(label_of())}")
    lo, hi = pin.per_class
    for wnid, n in sorted(counts.items()):
        if not lo <= n <= hi:
            want = f"{lo}" if lo == hi else f"between {lo} and {hi}"
            raise ListError(f"{name}: class {wnid} has {n} images, expected {want}")
