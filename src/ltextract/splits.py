"""The ImageNet-LT split lists: parse and validate them line by line, pin the published ones,
and pick where each list comes from (custom URL, local folder, or the published mirrors)."""
from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence

from ltextract.base import ListError, label_of

if TYPE_CHECKING:
    import requests

SPLITS = ("train", "val", "test")
#: Which ILSVRC2012 tar a split's images come from: ImageNet-LT's val is carved out of train.
TOP = {"train": "train", "val": "train", "test": "val"}

#: Longer than any sane line (published ones are < 60 bytes); stops a huge blob before any regex.
MAX_LINE = 1024
#: NAME_MAX on common file systems; every file must be creatable under OUT.
MAX_NAME = 255
#: Far above any list (even a full 1.28M-image ImageNet list), low enough to keep memory bounded.
MAX_BYTES = 64 << 20
MAX_LINES = 4_000_000


@dataclass(frozen=True)
class Pin:
    """What the published list of a split must look like, byte for byte and in totals."""

    split: str
    filename: str
    lines: int
    size: int
    sha256: str
    per_class: tuple[int, int]  # (min, max) images per class


PINS: dict[str, Pin] = {
    "train": Pin("train", "ImageNet_LT_train.txt", 115_846, 4_658_674,
                 "efdbdad4f050237c310b2f354cf95a8b1d7c8d57a63c4ea4bb6bf2bcb012f37f", (5, 1280)),
    "val": Pin("val", "ImageNet_LT_val.txt", 20_000, 804_172,
               "9af7ba688acf9532ff5845a8fb14a1e97fdc4c51ac48bc72c08ea9c3f7ff142e", (20, 20)),
    "test": Pin("test", "ImageNet_LT_test.txt", 50_000, 2_344_500,
                "d1590191cf8a71fada7b1aaedaa2d139a2aea93ff2f1b755319d0bd8dbaa55d5", (50, 50)),
}


class Entry(NamedTuple):
    """One image of a list; `line` is 1-based so later stages can still cite `file:line`.
    A NamedTuple: as immutable as a frozen dataclass, made 3x faster (a list has 10^5)."""

    top: str
    wnid: str
    file: str
    label: int
    line: int

    @property
    def path(self) -> str:
        return f"{self.top}/{self.wnid}/{self.file}"


@dataclass(frozen=True)
class SplitList:
    split: str
    entries: list[Entry]
    sha256: str
    source: str  # path or URL the bytes came from
    published: bool  # sha256 equals the pin
    canonical_sha256: str  # what the list says, hashed as `canonical_sha256` does


def _quiet(msg: str) -> None:
    """Default `warn`: library calls stay silent unless the caller passes a sink."""


# The shape of every well-formed line; anything else goes to _diagnose for a precise message.
# File names: printable ASCII without '/' or '\\'; the label: a plain decimal integer.
_LINE = re.compile(r"(train|val)/(n[0-9]{8})/(?!\.\.?[ \t])([!-.0-\[\]-~]{1,%d})[ \t]+"
                   r"(0|[1-9][0-9]{0,3})\r?" % MAX_NAME)
#: `_LINE` at every line of a text: as many matches as lines means every line is well-formed.
_LINES = re.compile(f"^{_LINE.pattern}$", re.MULTILINE)
_WNID = re.compile(r"n[0-9]{8}")
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
    top, wnid, name = parts
    if top not in ("train", "val"):
        return f"top folder {_show(top)} is neither 'train' nor 'val'"
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
    return f"label {label} is not one of the {len(label_of())} ILSVRC2012 labels"


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


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Creating ~100k long-lived entries triggers many useless GC passes (a third of the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_list(data: bytes, name: str) -> list[Entry]:
    """Validate every line of a list and return its entries; errors cite `name:line: what`."""
    with _gc_paused():
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
    tops, wnids, files, labels = zip(*rows)
    if len(set(tops)) != 1 or tuple(map(_label_strings().get, wnids)) != labels:
        return None
    if len(set(files)) != len(files) and len(set(zip(wnids, files))) != len(files):
        return None
    wnid, label = (d.__getitem__ for d in _shared())  # both checked above: every key is there
    return list(map(Entry, repeat(tops[0]), map(wnid, wnids), files, map(label, labels),
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
    top0: Optional[str] = None
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
        top, wnid, file, label = m.groups()
        if want.get(wnid) != label:
            raise ListError(f"{name}:{no}: {_bad_label(wnid, label)}")
        if top != top0:
            if top0 is not None:
                raise ListError(f"{name}:{no}: top folder {top} differs from {top0} on line"
                                f" {entries[0].line}; one list points into one tar")
            top0 = top
        first = seen.setdefault(m.group(1, 2, 3), no)
        if first != no:
            raise ListError(f"{name}:{no}: duplicate of line {first} ({top}/{wnid}/{file})")
        if blank:
            raise ListError(f"{name}:{blank}: blank line before the end of the list")
        append(Entry(top, wnid, file, int(label), no))
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


def check_split(split: str, entries: Sequence[Entry], name: str) -> None:
    """A split's images live in one particular tar: val in train/, test in val/."""
    want = TOP[split]
    if entries and entries[0].top != want:
        raise ListError(f"{name}: the {split} list must point into {want}/, but line"
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


def _read_local(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_BYTES:  # before reading it all into memory
            raise ListError(f"{path}: {path.stat().st_size:,} bytes is too large for a list"
                            f" (limit {MAX_BYTES:,})")
        return path.read_bytes()
    except FileNotFoundError:
        raise ListError(f"{path} not found") from None
    except OSError as e:
        raise ListError(f"cannot read {path}: {e.strerror or e}") from None


def load_lists(splits: Sequence[str], *, splits_dir: Optional[Path] = None,
               split_urls: Mapping[str, str] = {},  # noqa: B006 - read only
               warn: Callable[[str], None] = _quiet,
               session: Optional[requests.Session] = None) -> dict[str, SplitList]:
    """Each split's list from the first source that applies: custom URL, `splits_dir`, published.

    A user-supplied list that is not byte-identical to the published one is still usable: it is
    recorded as custom (with one warning) so the output never claims to be ImageNet-LT proper.
    """
    unknown = [s for s in [*splits, *split_urls] if s not in PINS]
    if unknown:
        raise ListError(f"unknown split {unknown[0]!r} (expected one of {', '.join(SPLITS)})")
    online = any(s in split_urls or splits_dir is None for s in splits)
    if online:  # imported only then: runs from local lists (and `verify`) never load requests (50 ms)
        from ltextract import fetch
    own = session is None and online
    if own:
        session = fetch.new_session()
    try:
        out = {}
        for split in splits:
            pin = PINS[split]
            if split in split_urls:
                source = name = short = split_urls[split]
                data = fetch.fetch_url(source, session=session)
            elif splits_dir is not None:
                path = splits_dir / pin.filename
                source = name = str(path)
                short = path.name
                data = _read_local(path)
            else:
                data, source = fetch.fetch_published(split, session=session, warn=warn)
                name = short = pin.filename
            entries = parse_list(data, name)
            check_split(split, entries, name)
            digest = hashlib.sha256(data).hexdigest()
            published = digest == pin.sha256
            if published:
                check_totals(pin, entries, name)
            else:
                warn(f"{short} is not the published list (sha256 {digest[:12]}…);"
                     " recording it as custom")
            out[split] = SplitList(split, entries, digest, source, published,
                                   list_canonical_sha256(data, entries, digest))
        return out
    finally:
        if own and session is not None:
            session.close()
