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


def render_manifest(rows: list[Row], shard_columns: tuple[str, str] = SHARD_COLUMNS) -> bytes:
    """The same columns whatever the source; sharded builds add where each sample lives.

    Exactly what `csv.writer` writes: rows are joined directly (4x faster), unless a field holds
    a character csv may quote (a comma or line break makes the counts below differ; a quote)."""
    sharded = any(r.shard for r in rows)
    columns = COLUMNS + shard_columns if sharded else COLUMNS
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
                shard_columns: tuple[str, str] = SHARD_COLUMNS) -> None:
    """The manifest, and the list rewritten under `list_name` (none for shards: a list of paths
    that do not exist on disk would mislead)."""
    atomic_write(manifest_path(out, split), render_manifest(rows, shard_columns))
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
    if header is None or tuple(header[:5]) != COLUMNS[:5]:
        raise LtError(f"{path}:1: not an ltextract manifest (header {header})")
    cols = {name: i for i, name in enumerate(header)}
    where = SHARD_COLUMNS if "key" in cols else POSITION_COLUMNS
    rows = []
    for n, rec in enumerate(reader, start=2):
        try:
            rows.append(Row(rec[cols["path"]], int(rec[cols["label"]]), rec[cols["wnid"]],
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


def update_metadata(out: Path, split: str, record: dict[str, Any]) -> None:
    """Merge one split's record, keeping splits built by earlier runs into the same OUT."""
    try:
        meta = read_metadata(out)
    except LtError:
        meta = {"splits": {}}
    meta["tool"] = "ltextract"
    meta["version"] = __version__
    meta["splits"][split] = record
    atomic_write(out / METADATA, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def check_format(out: Path, splits: tuple[str, ...], fmt: str) -> None:
    """Refuse to mix formats in one split folder: the other format's files would be strays."""
    try:
        built = read_metadata(out)["splits"]
    except LtError:
        return
    for split in splits:
        before = built[split].get("format", "folders") if split in built else fmt
        if before != fmt:
            raise LtError(f"{out / split} holds a --format {before} build; remove it or use another --out")
