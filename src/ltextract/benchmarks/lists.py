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

from ltextract.benchmarks import Benchmark, Pin, SplitSpec, get
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
    wnid: str  # its class folder (a wnid in ImageNet's lists); from the label in a flat list
    file: str
    label: int
    line: int

    @property
    def path(self) -> str:
        return f"{self.origin}/{self.wnid}/{self.file}"


def list_path(origin: str, cls: str, file: str, flat: bool = False) -> str:
    """A list line's path: `<top>/<class>/<file>`, or `<top>/<file>` in a flat list."""
    return f"{origin}/{file}" if flat else f"{origin}/{cls}/{file}"


@dataclass(frozen=True)
class SplitList:
    split: str
    entries: list[Entry]
    sha256: str
    source: str  # path or URL the bytes came from
    published: bool  # sha256 equals the pin (or one of its published variants)
    canonical_sha256: str  # what the list says, hashed as `canonical_sha256` does
    flat: bool = False  # `val/<file> <label>` paths: no class folder, the class from the label
    variant: str = ""  # which published variant of the list it is, when not the pinned one

    def path(self, e: Entry) -> str:
        return list_path(e.origin, e.wnid, e.file, self.flat)


#: File names: printable ASCII without '/' or '\\'; the label: a plain decimal integer.
_FILE_LABEL = r"(?!\.\.?[ \t])([!-.0-\[\]-~]{1,%d})[ \t]+(0|[1-9][0-9]{0,3})\r?" % MAX_NAME
_LABEL = re.compile(r"0|[1-9][0-9]*")
_NAMED_WNID = re.compile(r"(n[0-9]{8})_")  # an ILSVRC train file's name: <wnid>_<n>.JPEG


class Grammar:
    """The shape of every well-formed line of one benchmark's lists (its class folder names);
    anything else goes to `_diagnose` for a precise message. Made once per benchmark."""

    def __init__(self, bench: Benchmark):
        self.bench = bench
        # where classes are wnids, a file named as ILSVRC train files are (`<wnid>_`) starts with
        # its folder's wnid (the lookahead: 5% of the pattern's time, a third of a column check)
        named = r"(?=\2_|(?!n[0-9]{8}_))" if bench.class_noun == "wnid" else ""
        self.line = re.compile(f"(train|val)/({bench.class_pattern})/{named}{_FILE_LABEL}")
        self.lines = re.compile(f"^{self.line.pattern}$", re.MULTILINE)  # every line of a text
        #: flat val paths (`val/<file> <label>`), as some codebases ship the test list
        self.flat = re.compile(f"(val)/{_FILE_LABEL}")
        self.flat_lines = re.compile(f"^{self.flat.pattern}$", re.MULTILINE)
        #: class -> its label as the list spells it, so the hot loop compares strings, not ints
        self.label_strings = {c: str(i) for c, i in bench.label_of.items()}
        #: one str per class and one int per label, for the entries of every list to share: 10^5
        #: fewer objects per list, and later stages hash and compare the same few hundred (a
        #: twentieth less time from lists to manifests)
        self.classes = {c: c for c in bench.classes}
        self.labels = {str(i): i for i in range(len(bench.classes))}
        self.class_of_label = {str(i): c for i, c in enumerate(bench.classes)}


@functools.lru_cache(maxsize=8)
def grammar(bench: Optional[Benchmark] = None) -> Grammar:
    return Grammar(bench or get())


def _show(s: str, limit: int = 40) -> str:
    """Quote a piece of input for a one-line message, whatever it contains."""
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _diagnose(line: str, bench: Benchmark) -> str:
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
    noun = bench.class_noun
    if len(fields) != 2:
        return f"expected '<top>/<{noun}>/<file> <label>', got {len(fields)} field(s): {_show(body)}"
    path, label = fields
    if path.startswith("/"):
        return f"absolute path {_show(path)}"
    parts = path.split("/")
    if ".." in parts:
        return f"path {_show(path)} contains '..'"
    if "" in parts:
        return f"path {_show(path)} has an empty component"
    if len(parts) != 3 and not (len(parts) == 2 and parts[0] == "val"):
        return f"path {_show(path)} has {len(parts)} parts, expected <top>/<{noun}>/<file>"
    origin, *folder, name = parts
    if origin not in ("train", "val"):
        return f"top folder {_show(origin)} is neither 'train' nor 'val'"
    if folder and not bench.class_re.fullmatch(folder[0]):
        return f"{_show(folder[0])} is not a {noun} ({bench.class_hint})"
    if name == ".":
        return "file name '.' is not a file"
    if len(name) > MAX_NAME:
        return f"file name is {len(name)} characters long (limit {MAX_NAME})"
    if "\\" in name:
        return f"file name {_show(name)} contains a backslash"
    if not _LABEL.fullmatch(label):
        return f"label {_show(label)} is not a plain non-negative integer"
    if folder and len(label) <= 4:  # a label the pattern takes: what else is off
        g = grammar(bench)
        if g.label_strings.get(folder[0]) != label:
            return _bad_label(g, folder[0], label)  # (as `_parse_lines` says it of a line the pattern takes)
        named = _NAMED_WNID.match(name)
        if named and bench.class_noun == "wnid" and named.group(1) != folder[0]:
            return f"file name's wnid {named.group(1)} differs from its folder {folder[0]}"
        return f"{_show(body)} is not a list line"
    return f"label {label} is not one of {bench.describe_classes('labels')}"


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


class Parsed(NamedTuple):
    entries: list[Entry]
    flat: bool  # `val/<file> <label>` paths (classes from the labels)


def parse_list(data: bytes, name: str, bench: Optional[Benchmark] = None) -> list[Entry]:
    """Validate every line of a list and return its entries; errors cite `name:line: what`."""
    return parse(data, name, bench).entries


def parse(data: bytes, name: str, bench: Optional[Benchmark] = None) -> Parsed:
    """`parse_list`, and whether the list's paths are flat (`val/<file>`)."""
    with gc_paused():
        return _parse(_decode(data, name), name, grammar(bench))


def _bad_label(g: Grammar, cls: str, label: str) -> str:
    index = g.bench.label_of.get(cls)
    if index is None:
        return f"{cls} is not one of {g.bench.describe_classes()}"
    return f"label {label} does not match {cls} (its index is {index})"


def _parse(text: str, name: str, g: Grammar) -> Parsed:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    entries = _parse_clean(text, lines, g)
    if entries is not None:
        return entries
    return _parse_lines(lines, name, g)


def _parse_clean(text: str, lines: list[str], g: Optional[Grammar] = None) -> Optional[Parsed]:
    """The entries of a list without a single fault, checked a whole column at a time (a third
    less time than line by line); None when anything is off: `_parse_lines` then says what."""
    g = g or grammar()
    if not lines or max(map(len, lines)) > MAX_LINE:
        return None
    rows = g.lines.findall(text)
    if len(rows) == len(lines):
        origins, classes, files, labels = zip(*rows)
        if len(set(origins)) != 1 or tuple(map(g.label_strings.get, classes)) != labels:
            return None
        if len(set(files)) != len(files) and len(set(zip(classes, files))) != len(files):
            return None
        cls, label = g.classes.__getitem__, g.labels.__getitem__  # both checked above: every key is there
        return Parsed(list(map(Entry, repeat(origins[0]), map(cls, classes), files, map(label, labels),
                               range(1, len(lines) + 1))), False)
    flat = g.flat_lines.findall(text) if not rows else ()
    if len(flat) != len(lines):  # a line neither pattern matches, or both shapes in one list
        return None
    origins, files, labels = zip(*flat)
    if len(set(files)) != len(files) or not set(labels) <= g.class_of_label.keys():
        return None
    return Parsed(list(map(Entry, repeat(origins[0]), map(g.class_of_label.__getitem__, labels), files,
                           map(g.labels.__getitem__, labels), range(1, len(lines) + 1))), True)


def _parse_lines(lines: list[str], name: str, g: Optional[Grammar] = None) -> Parsed:
    g = g or grammar()
    match, match_flat = g.line.fullmatch, g.flat.fullmatch
    want = g.label_strings
    entries: list[Entry] = []
    append = entries.append
    seen: dict[tuple[str, ...], int] = {}
    first: Optional[str] = None  # the origin of the first entry: every line must share it
    flat: Optional[bool] = None  # the shape of the first entry's path: every line must share it
    blank = 0  # first blank line of the current run; an entry after it is an error
    for no, line in enumerate(lines, 1):
        if len(line) > MAX_LINE:
            raise ListError(f"{name}:{no}: line is {len(line):,} characters long"
                            f" (limit {MAX_LINE:,}); not a list?")
        m = match(line)
        if m is not None:
            origin, cls, file, label = m.groups()
            if want.get(cls) != label:
                raise ListError(f"{name}:{no}: {_bad_label(g, cls, label)}")
        elif (m := match_flat(line)) is not None:
            origin, file, label = m.groups()
            cls = g.class_of_label.get(label, "")
            if not cls:
                raise ListError(f"{name}:{no}: label {label} is not one of"
                                f" {g.bench.describe_classes('labels')}")
        else:
            if not line.strip():
                blank = blank or no
                continue
            raise ListError(f"{name}:{no}: {_diagnose(line, g.bench)}")
        if origin != first:
            if first is not None:
                raise ListError(f"{name}:{no}: top folder {origin} differs from {first} on line"
                                f" {entries[0].line}; one list points into one tar")
            first = origin
        shape = m.re is g.flat
        if shape is not flat:
            if flat is not None:
                raise ListError(f"{name}:{no}: {'a flat' if shape else 'a <top>/<class>/<file>'} path,"
                                f" unlike line {entries[0].line}; one list, one shape of path")
            flat = shape
        earlier = seen.setdefault(m.groups()[:-1], no)
        if earlier != no:
            raise ListError(f"{name}:{no}: duplicate of line {earlier}"
                            f" ({list_path(origin, cls, file, shape)})")
        if blank:
            raise ListError(f"{name}:{blank}: blank line before the end of the list")
        append(Entry(origin, g.classes[cls], file, int(label), no))
    if not entries:
        raise ListError(f"{name}: no entries")
    return Parsed(entries, bool(flat))


def canonical_sha256(pairs: Iterable[tuple[str, int]]) -> str:
    """sha256 of a list written as '<path> <label>\\n' lines: what a list *says*, independent of
    CRLF, tabs, a BOM or a missing final newline. Equals the raw sha256 for the published lists."""
    h = hashlib.sha256()
    for path, label in pairs:
        h.update(f"{path} {label}\n".encode())
    return h.hexdigest()


def list_canonical_sha256(data: bytes, entries: Sequence[Entry], digest: str, flat: bool = False) -> str:
    """`canonical_sha256` of a parsed list whose raw sha256 is `digest`: that digest itself when
    the bytes are the canonical lines already (no BOM, CR or tab; one newline and one space per
    entry, so no blank line and single spaces; each line matched the grammar, whose labels have
    no leading zero), as the published lists are; hashed anew otherwise."""
    if not data.startswith(b"\xef\xbb\xbf") and data.endswith(b"\n") and b"\t" not in data \
            and b"\r" not in data and data.count(b"\n") == len(entries) == data.count(b" "):
        return digest
    return canonical_sha256((list_path(e.origin, e.wnid, e.file, flat), e.label) for e in entries)


def check_split(spec: SplitSpec, entries: Sequence[Entry], name: str) -> None:
    """A split's images live in one particular set: ImageNet-LT's val in train/, test in val/."""
    if entries and entries[0].origin != spec.origin:
        raise ListError(f"{name}: the {spec.name} list must point into {spec.origin}/, but line"
                        f" {entries[0].line} is {entries[0].path}")


def check_totals(pin: Pin, entries: Sequence[Entry], name: str, bench: Optional[Benchmark] = None) -> None:
    """The published totals; a list that passes its sha256 but not these means a wrong pin."""
    bench = bench or get()
    if len(entries) != pin.lines:
        raise ListError(f"{name}: {len(entries):,} entries, the published {pin.split} list has"
                        f" {pin.lines:,}")
    counts = Counter(e.wnid for e in entries)
    if len(counts) != len(bench.classes):
        raise ListError(f"{name}: {len(counts)} classes, expected {len(bench.classes)}")
    lo, hi = pin.per_class
    for cls, n in sorted(counts.items()):
        if not lo <= n <= hi:
            want = f"{lo}" if lo == hi else f"between {lo} and {hi}"
            raise ListError(f"{name}: class {cls} has {n} images, expected {want}")
