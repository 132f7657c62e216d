"""Records of a build: per-split CSV manifests, the lists rewritten relative to OUT, metadata.

Written only after a split's files are complete, each through a temporary name, so a
manifest at its final path always describes files that exist.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import stat
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Iterable, Optional

from ltextract import __version__
from ltextract.errors import LtError
from ltextract.out import STATE_DIR
from ltextract.files import atomic_write, expect, read_json, read_text, safe_column, safe_rel

COLUMNS = ("path", "label", "wnid", "size", "sha256", "file_name")
#: the third column names the class folder: a wnid in ImageNet's benchmarks, a class in Places-LT
CLASS_COLUMNS = ("wnid", "class")
#: Where each image lives in a --format webdataset build (shard relative to OUT, sample key).
SHARD_COLUMNS = ("shard", "key")
#: ... in a --format tfds or hf build: the shard and the example's 0-based position in it.
POSITION_COLUMNS = ("shard", "index")
METADATA = "ltextract.json"


@dataclass(slots=True)  # not frozen: a frozen init costs 4x, and a build makes one per file
class Row:
    path: str  # relative to OUT, "/"-separated
    label: int
    wnid: str
    size: int
    sha256: str
    shard: str = ""  # sharded builds only
    key: str = ""  # webdataset's sample key; tfds and hf: the position in the shard, in decimal

    @property
    def file_name(self) -> str:
        """The bare file name: TFDS's `file_name` feature, for joins with TFDS pipelines."""
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Columns:
    """A manifest a column at a time, as verify reads it: no record per file (the records of
    ImageNet-LT's 186K files were a tenth of verify's own time, and memory)."""
    path: list[str]
    label: list[int]
    wnid: list[str]
    size: list[int]
    sha256: list[str]
    shard: list[str] = field(default_factory=list)  # sharded builds only
    key: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.path)

    def rows(self) -> list[Row]:
        return list(map(Row, self.path, self.label, self.wnid, self.size, self.sha256,
                        *((self.shard, self.key) if self.shard else ())))

    @classmethod
    def of(cls, rows: list[Row]) -> "Columns":
        path, label, wnid, size, sha256, shard, key = (
            list(map(attrgetter(name), rows)) for name in ("path", "label", "wnid", "size", "sha256", "shard", "key"))
        return cls(path, label, wnid, size, sha256, *((shard, key) if any(shard) else ()))


def manifest_path(out: Path, split: str) -> Path:
    return out / f"{split}.csv"


def list_path(out: Path, list_name: str) -> Path:
    """The split's list rewritten relative to OUT, under the published list's file name."""
    return out / list_name


def render_manifest(rows: list[Row], shard_columns: tuple[str, str] = SHARD_COLUMNS,
                    class_column: str = "wnid") -> bytes:
    """The same columns whatever the source; sharded builds add where each sample lives.
    `class_column`: what the benchmark's class folders are (`wnid`; Places-LT's `class`).

    Exactly what `csv.writer` writes: rows are joined directly (4x faster), unless a field holds
    a character csv may quote (a comma or line break makes the counts below differ; a quote)."""
    sharded = any(r.shard for r in rows)
    columns = COLUMNS[:2] + (class_column,) + COLUMNS[3:]
    columns += shard_columns if sharded else ()
    tails = (f",{r.shard},{r.key}" for r in rows) if sharded else itertools.repeat("")
    # file_name inlined: a property call per row was about a tenth of the rendering time
    lines = [f"{r.path},{r.label},{r.wnid},{r.size},{r.sha256},{r.path.rpartition('/')[2]}{tail}\n"
             for r, tail in zip(rows, tails)]
    text = ",".join(columns) + "\n" + "".join(lines)
    if text.count(",") != (len(columns) - 1) * (len(rows) + 1) or text.count("\n") != len(rows) + 1 \
            or '"' in text or "\r" in text:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            rec = (r.path, r.label, r.wnid, r.size, r.sha256, r.file_name)
            writer.writerow(rec + (r.shard, r.key) if sharded else rec)
        text = buf.getvalue()
    return text.encode("utf-8")


def render_list(rows: Iterable[Row]) -> bytes:
    """The list relative to OUT: loaders doing os.path.join(root, path) work with root = OUT."""
    return render_lines([r.path for r in rows], [r.label for r in rows]).encode("utf-8")


def render_lines(paths: list[str], labels: list[int]) -> str:
    """`render_list`'s text, a column at a time."""
    return "".join([f"{path} {label}\n" for path, label in zip(paths, labels)])


def write_split(out: Path, split: str, rows: list[Row], list_name: Optional[str] = None,
                shard_columns: tuple[str, str] = SHARD_COLUMNS, class_column: str = "wnid") -> None:
    """The manifest, and the list rewritten under `list_name` (none for shards: a list of paths
    that do not exist on disk would mislead); what was written is noted in OUT's state folder."""
    written = [manifest_path(out, split)] + ([list_path(out, list_name)] if list_name else [])
    atomic_write(written[0], render_manifest(rows, shard_columns, class_column))
    if list_name:
        atomic_write(written[1], render_list(rows))
    notes = [f"{p.name}\t{st.st_size}\t{st.st_mtime_ns}\n" for p in written for st in [os.lstat(p)]]
    atomic_write(_written_note(out, split), "".join(notes).encode())


def _written_note(out: Path, split: str) -> Path:
    return out / STATE_DIR / f"{split}.written"


def unchanged_since_written(out: Path, split: str) -> bool:
    """The split's manifest and list are the very files its last build wrote (regular, same size
    and mtime), as a re-run with nothing to do takes them (a full build rewrites them)."""
    try:
        notes = _written_note(out, split).read_text("utf-8").splitlines()
        for note in notes:
            name, size, mtime_ns = note.split("\t")
            st = os.lstat(out / name)
            if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (int(size), int(mtime_ns)):
                return False
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return bool(notes)


def read_manifest(out: Path, split: str) -> list[Row]:
    """The rows of a split's manifest (`read_columns`)."""
    return read_columns(out, split).rows()


def read_columns(out: Path, split: str) -> Columns:
    """A split's manifest. Rows whose fields disagree (path, wnid, label) are for `checks` to
    report; a row that cannot be a manifest row, or names a path that could leave OUT, fails
    here as `FILE:LINE: what`."""
    path = manifest_path(out, split)
    text = read_text(path, f"{path} is missing: was the build of {split} finished?")
    columns = _clean_columns(text)
    if columns is not None:
        return columns
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or len(header) < 5 or header[2] not in CLASS_COLUMNS \
                or (header[:2], header[3:5]) != (list(COLUMNS[:2]), list(COLUMNS[3:5])):
            raise LtError(f"{path}:1: not an ltextract manifest (header {str(header)[:80]})")
        cols = {name: i for i, name in enumerate(header)}
        shard_cols = [cols[c] for c in (SHARD_COLUMNS if "key" in cols else POSITION_COLUMNS) if c in cols]
        return Columns.of([_row(rec, cols, shard_cols, path, reader.line_num) for rec in reader])
    except csv.Error as e:
        raise LtError(f"{path}:{reader.line_num}: not a manifest row ({e}); the file is damaged") from None


def _clean_columns(text: str) -> Optional[Columns]:
    """The columns of a manifest exactly as ltextract writes it (no quoting, paths safe to open
    under OUT), split a whole column at a time: a tenth of the time of csv and a check per row.
    None for anything else: the csv path then parses it, and names what is wrong."""
    header, _, body = text.partition("\n")
    width = len(header.split(","))
    if header not in _HEADERS or not body.endswith("\n") or any(c in body for c in '"\r\0'):
        return None
    n = body.count("\n")
    fields = body.replace("\n", ",").split(",")
    if len(fields) != width * n + 1:  # (the final newline leaves one empty field)
        return None
    paths = fields[0:-1:width]
    if not safe_column(paths, _PATH_SLASHES):
        return None  # a path that is not <top>/[<class>/]<file>, or could leave OUT
    try:
        labels, sizes = list(map(int, fields[1:-1:width])), list(map(int, fields[3:-1:width]))
    except ValueError:
        return None
    if n and min(sizes) < 0:
        return None
    columns = Columns(paths, labels, fields[2:-1:width], sizes, fields[4:-1:width])
    if width > len(COLUMNS):  # a sharded build's: the shard (a file under OUT), the key or position
        if not safe_column(fields[6:-1:width], _SHARD_SLASHES):
            return None
        columns.shard, columns.key = fields[6:-1:width], fields[7:-1:width]
    return columns


_HEADERS = {",".join(COLUMNS[:2] + (c,) + COLUMNS[3:] + tail) for c in CLASS_COLUMNS
            for tail in ((), SHARD_COLUMNS, POSITION_COLUMNS)}
#: `<split>/<class>/<file>`, or `val/<file>` (a flat list's paths, --layout lists)
_PATH_SLASHES = {1, 2}
#: webdataset's and hf's `<folder>/<shard>`, tfds's `<name>/<version>/<shard>`
_SHARD_SLASHES = {1, 2}


def _row(rec: list[str], cols: dict[str, int], shard_cols: list[int], path: Path, line: int) -> Row:
    try:
        row = Row(rec[cols["path"]], int(rec[cols["label"]]), rec[2], int(rec[cols["size"]]),
                  rec[cols["sha256"]], *(rec[i] for i in shard_cols))
    except (IndexError, ValueError):
        raise LtError(f"{path}:{line}: malformed manifest row; the file is damaged") from None
    if not safe_rel(row.path, {n + 1 for n in _PATH_SLASHES}) \
            or (row.shard and not safe_rel(row.shard, {n + 1 for n in _SHARD_SLASHES})) or row.size < 0:
        raise LtError(f"{path}:{line}: malformed manifest row (path {row.path[:80]!r}, size"
                      f" {row.size}); the file is damaged")
    return row


def read_metadata(out: Path) -> dict[str, Any]:
    """ltextract.json, checked as far as verify and build rely on it."""
    path = out / METADATA
    meta = expect(read_json(path, f"{out} holds no ltextract build ({METADATA} is missing)"), dict,
                  path, "the whole")
    for key in ("benchmark", "layout"):
        if key in meta:
            expect(meta[key], str, path, key)
    for split, record in expect(meta.get("splits"), dict, path, "splits").items():
        expect(record, dict, path, f"splits.{split}")
        for key, kind in (("files", int), ("bytes", int), ("format", str), ("link", str),
                          ("source", str), ("list", dict)):
            if key in record:
                expect(record[key], kind, path, f"splits.{split}.{key}")
    return meta


def update_metadata(out: Path, split: str, record: dict[str, Any],
                    build: Optional[dict[str, str]] = None) -> None:
    """Merge one split's record, keeping splits built by earlier runs into the same OUT (a
    damaged file was refused by `check_format` before the build began); `build`: what holds for
    the whole OUT (the benchmark, the layout), so verify and stats know it."""
    meta = read_metadata(out) if (out / METADATA).exists() else {"splits": {}}
    meta["tool"] = "ltextract"
    meta["version"] = __version__
    meta.update(build or {})
    meta["splits"][split] = record
    atomic_write(out / METADATA, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def benchmark_of(meta: dict[str, Any]) -> str:
    """The benchmark an OUT holds (builds before the catalog recorded none: ImageNet-LT)."""
    return str(meta.get("benchmark", "imagenet_lt"))


def layout_of(meta: dict[str, Any]) -> str:
    return str(meta.get("layout", "splits"))


def check_format(out: Path, splits: tuple[str, ...], fmt: str, benchmark: str = "imagenet_lt",
                 layout: str = "splits") -> None:
    """Refuse to mix benchmarks or layouts in one OUT, and formats in one split folder: the
    other's files would be strays, or worse, taken for this one's. A damaged ltextract.json is
    refused too (rather than dropping the other splits' records): deleted, the next build writes
    it afresh for the splits it builds."""
    if not (out / METADATA).exists():
        return
    try:
        meta = read_metadata(out)
    except LtError as e:
        raise LtError(f"{e}; delete it and re-run build for every split (their files are kept)") from None
    built = meta["splits"]
    if built and benchmark_of(meta) != benchmark:
        raise LtError(f"{out} holds a {benchmark_of(meta)} build; use another --out for {benchmark}")
    if built and layout_of(meta) != layout:
        raise LtError(f"{out} holds a --layout {layout_of(meta)} build; use another --out for"
                      f" --layout {layout}")
    for split in splits:
        before = built[split].get("format", "folders") if split in built else fmt
        if before != fmt:
            raise LtError(f"{out / split} holds a --format {before} build; remove it or use another --out")
