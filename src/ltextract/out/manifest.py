"""Records of a build: per-split CSV manifests, the lists rewritten relative to OUT, metadata.

Written only after a split's files are complete, each through a temporary name, so a
manifest at its final path always describes files that exist.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from ltextract import __version__
from ltextract.errors import LtError
from ltextract.files import atomic_write, read_json

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
    return "".join([f"{r.path} {r.label}\n" for r in rows]).encode("utf-8")


def write_split(out: Path, split: str, rows: list[Row], list_name: Optional[str] = None,
                shard_columns: tuple[str, str] = SHARD_COLUMNS, class_column: str = "wnid") -> None:
    """The manifest, and the list rewritten under `list_name` (none for shards: a list of paths
    that do not exist on disk would mislead)."""
    atomic_write(manifest_path(out, split), render_manifest(rows, shard_columns, class_column))
    if list_name:
        atomic_write(list_path(out, list_name), render_list(rows))


def read_manifest(out: Path, split: str) -> list[Row]:
    path = manifest_path(out, split)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise LtError(f"{path} is missing: was the build of {split} finished?") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or len(header) < 5 or header[2] not in CLASS_COLUMNS \
            or (header[:2], header[3:5]) != (list(COLUMNS[:2]), list(COLUMNS[3:5])):
        raise LtError(f"{path}:1: not an ltextract manifest (header {header})")
    cols = {name: i for i, name in enumerate(header)}
    where = SHARD_COLUMNS if "key" in cols else POSITION_COLUMNS
    rows = []
    for n, rec in enumerate(reader, start=2):
        try:
            rows.append(Row(rec[cols["path"]], int(rec[cols["label"]]), rec[2],
                            int(rec[cols["size"]]), rec[cols["sha256"]],
                            *(rec[cols[c]] for c in where if c in cols)))
        except (IndexError, ValueError):
            raise LtError(f"{path}:{n}: malformed manifest row") from None
    return rows


def read_metadata(out: Path) -> dict[str, Any]:
    path = out / METADATA
    meta = read_json(path, f"{out} holds no ltextract build ({METADATA} is missing)")
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        raise LtError(f"{path} is not ltextract metadata")
    return meta


def update_metadata(out: Path, split: str, record: dict[str, Any],
                    build: Optional[dict[str, str]] = None) -> None:
    """Merge one split's record, keeping splits built by earlier runs into the same OUT; `build`:
    what holds for the whole OUT (the benchmark, the layout), so verify and stats know it."""
    try:
        meta = read_metadata(out)
    except LtError:
        meta = {"splits": {}}
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
    other's files would be strays, or worse, taken for this one's."""
    try:
        meta = read_metadata(out)
    except LtError:
        return
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
