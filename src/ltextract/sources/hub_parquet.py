"""The Hub's parquet shards (`train-00000-of-00294.parquet` …, `validation-…-of-00014.parquet`):
rows of `image {bytes, path}` and `label` (the sorted-wnid index), in row groups (of 100 rows as
the Hub wrote them; read from the footer, never assumed).

Located by reading only the `image.path` and `label` columns (a few hundredths of a percent of
the bytes), each listed row's appended wnid checked against the list's and against its label;
copied by reading only the `image.bytes` of the row groups that hold listed rows, shard by shard,
several at once in processes of their own. pyarrow (the `hub` extra) does the reading, in those
processes only: the parent forks after, and a process that has run Arrow's thread pools is not
one to fork."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable, Iterator

from ltextract.benchmarks.classes import label_of
from ltextract.errors import LtError, TarError
from ltextract.sources import Indexes, Job, Key, Located, Where
from ltextract.sources.hub import PARQUET, HubSource, original_name, wnid_mismatch
from ltextract.sources.stream import Writes
from ltextract.workers import can_fork, fork_map

INDEX_WORKERS = 2  # shards indexed at once: small reads, mostly waiting on storage


def parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LtError("reading the Hub's parquet shards needs pyarrow: pip install 'ltextract[hub]'") from None
    return pq


def open_shard(shard: Path) -> Any:
    """The shard's ParquetFile (its footer read), its schema checked: a corrupt footer, a file
    that is not parquet, or other columns each fail in one line naming the shard."""
    import pyarrow as pa

    try:
        pf = parquet().ParquetFile(shard)
    except (ValueError, OSError) as e:  # pyarrow.ArrowInvalid is a ValueError
        raise TarError(f"{shard} is not a readable parquet file: {str(e).splitlines()[0]}") from None
    schema = pf.schema_arrow
    image = schema.field("image").type if "image" in schema.names else pa.null()
    fields = {f.name: f.type for f in image} if pa.types.is_struct(image) else {}
    label = schema.field("label").type if "label" in schema.names else pa.null()
    if not (pa.types.is_binary(fields.get("bytes", pa.null())) or pa.types.is_large_binary(fields.get("bytes", pa.null()))
            ) or not pa.types.is_string(fields.get("path", pa.null())) or not pa.types.is_integer(label):
        found = ", ".join(f"{f.name}: {f.type}" for f in schema)
        raise TarError(f"{shard} is not a shard of the Hub's ImageNet: expected the columns"
                       f" image {{bytes, path}} and label, found {found}")
    return pf


def index_shard(shard: Path, wanted: dict[bytes, str]) -> dict[Key, int]:
    """(wnid, file) -> row of every listed file the shard holds, from its paths and labels."""
    pf = open_shard(shard)
    try:
        table = pf.read(columns=["image.path", "label"])
    except (ValueError, OSError) as e:
        raise TarError(f"{shard}: cannot read its paths and labels: {str(e).splitlines()[0]}") from None
    paths = table.column("image").combine_chunks().field("path").to_pylist()
    labels = table.column("label").to_pylist()
    labels_of = label_of()
    found: dict[Key, int] = {}
    for row, path in enumerate(paths):
        orig, hub_wnid = original_name(path.encode("utf-8", "surrogateescape") if path else b"")
        wnid = wanted.get(orig) if orig else None
        if wnid is None:
            continue
        file = orig.decode("utf-8", "surrogateescape")
        if hub_wnid.decode() != wnid:
            raise wnid_mismatch(shard, path, hub_wnid.decode(), file, wnid)
        if labels[row] != labels_of[wnid]:
            raise TarError(f"{shard}: row {row:,} ({path}) has label {labels[row]}, but {wnid} is"
                           f" {labels_of[wnid]} in the Hub's numbering (the sorted wnids)")
        found[(wnid, file)] = row
    return found


@dataclass
class ParquetShardRead:
    """The row groups of one shard that hold listed rows, in order: only their image bytes."""
    origin: str
    label: str
    shard: Path
    jobs: list[Job]  # by row (a job's `offset`)

    def run(self, write: Callable[[Job, bytes], object], threads: int) -> Iterator[object]:
        pf = open_shard(self.shard)
        meta = pf.metadata
        starts = list(accumulate((meta.row_group(g).num_rows for g in range(meta.num_row_groups)),
                                 initial=0))
        writes = Writes(write, threads)
        try:
            i = 0
            while i < len(self.jobs):
                group = bisect_right(starts, self.jobs[i].offset) - 1
                end = starts[group + 1]
                first = i
                while i < len(self.jobs) and self.jobs[i].offset < end:
                    i += 1
                images = self._read(pf, group)
                for job in self.jobs[first:i]:
                    data = images[job.offset - starts[group]].as_py()
                    if data is None:
                        raise TarError(f"{self.shard}: row {job.offset:,} has no image bytes")
                    yield from writes.submit(job, data)
            yield from writes.drain()
        finally:
            writes.close()

    def _read(self, pf: Any, group: int) -> Any:
        try:
            table = pf.read_row_group(group, columns=["image.bytes"])
        except (ValueError, OSError) as e:
            raise TarError(f"{self.shard}: row group {group}: {str(e).splitlines()[0]}") from None
        return table.column("image").combine_chunks().field("bytes")


class HubParquetSource(HubSource):
    kind = PARQUET

    def locate(self, keys: set[Key], indexes: Indexes) -> Located:
        wanted = {file.encode("utf-8", "surrogateescape"): wnid for wnid, file in keys}

        def index(shard: Path) -> dict[Key, int]:
            return index_shard(shard, wanted)

        forked = can_fork() and len(self.shards) > 1
        found = fork_map(index, self.shards, INDEX_WORKERS, f"{self.path}: a parquet index") \
            if forked else map(index, self.shards)
        where: dict[Key, Where] = {}
        for shard, rows in zip(self.shards, found):
            for key, row in rows.items():
                where[key] = (shard, row, -1)
        return Located(where, self.label)

    def shard_reads(self, jobs: list[Job]) -> list[ParquetShardRead]:
        by_shard: dict[Path, list[Job]] = {}
        for job in jobs:
            by_shard.setdefault(job.file, []).append(job)
        return [ParquetShardRead(self.origin, str(s), s, sorted(by_shard[s], key=lambda j: j.offset))
                for s in self.shards if s in by_shard]

