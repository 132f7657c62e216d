"""`--format hf`: parquet shards `OUT/data/{train,validation,test}-NNNNN-of-NNNNN.parquet` and a
dataset card `OUT/README.md`, the layout `Dataset.push_to_hub` writes, so that
`datasets.load_dataset(OUT)` (and `load_dataset("parquet", data_dir=OUT/data)`) gives splits
train, validation and test (and any other split under its own name) with features image
(`Image`, the original bytes), label (`ClassLabel`, the benchmark's class names in label order:
ImageNet-LT's 1000 wnids) and file_name (`<class>/<file>` where file names repeat across
classes, as Places365's).

The features are in both places `datasets` looks: the parquet schema's `huggingface` metadata
(read by a bare parquet load) and the card's `dataset_info` (whose `num_examples` a load checks).
Written with pyarrow as `datasets` writes parquet: image bytes uncompressed and PLAIN-encoded,
the other columns snappy with dictionaries. Rows keep the list's order; a split is cut into
shards of at most `--shard-size` (default 500MB, push_to_hub's) of Arrow data, evenly, as
push_to_hub cuts them; each shard's images are read a window at a time in the order of the tar.
"""
from __future__ import annotations

import array
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Optional

from ltextract.benchmarks import Benchmark
from ltextract.errors import LtError
from ltextract.files import atomic_write, unlink_quietly
from ltextract.formats import Options, Problem, Read, need_extra, reads_into
from ltextract.formats.sharded_check import Damaged
from ltextract.formats.sharded import (Shard, ShardedWriter, Stopped, file_name, in_order,
                                       library_split, out_benchmark, prefetched, source_order)
from ltextract.formats.shards import ShardSize
from ltextract.plan import Job

CARD = "README.md"
MARK = "<!-- written by ltextract build --format hf: rewritten as splits finish -->"
DEFAULT_SIZE = ShardSize(max_bytes=500 * 10**6)  # push_to_hub's max_shard_size


def arrow_bytes(jobs: list[Job], name: Callable[[Job], str] = file_name) -> int:
    """What Arrow holds of these rows (image bytes and path, label, file_name, with offsets):
    the split's `num_bytes` on the card, and what shards are cut by."""
    return sum(j.size + 2 * len(name(j)) + 20 for j in jobs) + 12


def size_text(size: ShardSize) -> str:
    """--shard-size as ltextract.json records it (and `parse_shard_size` reads it back)."""
    return f"{size.max_files}files" if size.max_files else f"{size.max_bytes}B"


def features(names: tuple[str, ...]) -> dict:
    """`datasets.Features.to_dict()` of {image: Image, label: ClassLabel, file_name: string}."""
    return {"image": {"_type": "Image"}, "label": {"names": list(names), "_type": "ClassLabel"},
            "file_name": {"dtype": "string", "_type": "Value"}}


def schema(names: tuple[str, ...]):
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.schema([("image", image), ("label", pa.int64()), ("file_name", pa.string())]).with_metadata(
        {"huggingface": json.dumps({"info": {"features": features(names)}})})


class HfWriter(ShardedWriter):
    name = "hf"
    folder = "data"  # type: ignore[assignment]  # (the same for every benchmark)
    options_used = ("shard_size",)

    @classmethod
    def usable(cls, options: Options) -> None:
        super().usable(options)
        need_extra("pyarrow.parquet", "hf", "hf")

    def __init__(self, out: Path, options: Options) -> None:
        super().__init__(out, options)
        self.size: ShardSize = options.shard_size or DEFAULT_SIZE

    def identity(self, source: str) -> str:
        return f"{source} hf {self.size}"

    def shard_bytes(self, shard: Shard) -> int:
        return arrow_bytes(shard.jobs, self.example_name)

    def owns(self, name: str, split: str) -> bool:
        return name.startswith(f"{library_split(split)}-") and name.endswith(".parquet")

    def begin(self, jobs, identities, partial):
        card = self.out / CARD
        if card.exists() and MARK not in card.read_text("utf-8", "replace"):
            raise LtError(f"{card} was not written by ltextract; move it or use another --out")
        return super().begin(jobs, identities, partial)

    def plan(self, split: str, jobs: list[Job]) -> list[Shard]:
        """List order, cut into equal runs as `Dataset.shard(n, i, contiguous=True)` does."""
        if self.size.max_files:
            count = -(-len(jobs) // self.size.max_files)
        else:
            count = int(arrow_bytes(jobs, self.example_name) / self.size.max_bytes) + 1  # type: ignore[operator]
        count = max(1, min(count, len(jobs)))
        div, mod = divmod(len(jobs), count)
        shards, start = [], 0
        for i in range(count):
            end = start + div + (i < mod)
            name = f"{library_split(split)}-{i:05d}-of-{count:05d}.parquet"
            shards.append(Shard(f"{self.folder}/{name}", split, jobs[start:end]))
            start = end
        return shards

    def split_meta(self, split: str, shards: list[Shard]) -> dict:
        return {**super().split_meta(split, shards), "hf_split": library_split(split),
                "shard_size": size_text(self.size),
                "num_bytes": arrow_bytes([j for sh in shards for j in sh.jobs], self.example_name)}

    def write_index(self, complete: dict[str, dict]) -> None:
        """The dataset card, for the finished splits only (a load checks their counts)."""
        text = render_card(self.out, complete, self.benchmark)
        if text is None:
            if (self.out / CARD).exists():
                unlink_quietly(self.out / CARD)
        else:
            atomic_write(self.out / CARD, text.encode())

    # --- worker -------------------------------------------------------------------------
    def write_shard(self, fd: int, shard: Shard, read: Read, stopped: Callable[[], bool]) -> list[bytes]:
        """A row group per window of images, each window's images read into one buffer that
        Arrow takes as it is; no statistics of the image column (min/max of whole images cost
        more than writing them)."""
        import pyarrow.parquet as pq

        arrow = schema(self.benchmark.classes)
        digests: list[bytes] = []
        with _sink(fd) as f, \
                pq.ParquetWriter(f, arrow, compression={"image.bytes": "none", "image.path": "none",
                                                        "label": "snappy", "file_name": "snappy"},
                                 use_dictionary=["label", "file_name"], write_statistics=["label", "file_name"],
                                 column_encoding={"image.bytes": "PLAIN", "image.path": "PLAIN"}) as writer:
            for window, (table, window_digests) in prefetched(
                    shard.jobs, lambda jobs: _window_table(arrow, jobs, read, stopped, self.example_name)):
                writer.write_table(table, row_group_size=len(window))
                digests += window_digests
        return digests

    # --- verify -------------------------------------------------------------------------
    @classmethod
    def for_record(cls, out: Path, record: dict) -> HfWriter:
        from ltextract.formats.shards import parse_shard_size

        try:
            size = parse_shard_size(str(record.get("shard_size", "")))
        except ValueError:
            raise LtError(f"{out}: unreadable shard_size {record.get('shard_size')!r} in ltextract.json") from None
        return cls(out, Options(shard_size=size, benchmark=out_benchmark(out)))

    @classmethod
    def read_shard(cls, path: Path, record: dict) -> Iterator[tuple[str, int, bytes]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
            classes = out_benchmark(path.parent.parent).classes  # (OUT/data/<shard>)
            if not pf.schema_arrow.equals(schema(classes), check_metadata=True):
                raise Damaged("its columns or features differ from what the build writes")
            for batch in pf.iter_batches(batch_size=256):
                image, labels, names = batch.columns
                for data, path_, label, name in zip(image.field("bytes").to_pylist(), image.field("path").to_pylist(),
                                                    labels.to_pylist(), names.to_pylist()):
                    yield (name if path_ == name else f"{name} (image path {path_})"), label, data or b""
        except pa.ArrowException as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise Damaged(str(e)) from None

    def check_index(self, records: dict[str, dict]) -> list[Problem]:
        try:
            same = (self.out / CARD).read_text("utf-8") == render_card(self.out, records, self.benchmark)
        except FileNotFoundError:
            return [Problem(CARD, "missing")]
        except UnicodeDecodeError:
            same = False
        return [] if same else [Problem(CARD, "differs from the dataset card of the finished splits")]


def _sink(fd: int):
    """The shard's file as pyarrow's own file where Linux lets it be reopened: through a Python
    file, pyarrow copies every write into a bytes object first. Opened to append, not "wb": a
    file truncated on open, even an empty one, is flushed to disk by ext4 as it is closed."""
    import pyarrow as pa

    reopen = f"/proc/self/fd/{fd}"
    return pa.OSFile(reopen, "ab") if os.path.exists(reopen) else open(fd, "wb", closefd=False)


def _window_table(arrow, jobs: list[Job], read: Read, stopped: Callable[[], bool], name: Callable[[Job], str]):
    """The rows of `jobs` as a table, their images read in the order of the tar straight into
    one buffer of Arrow's memory pool (reused window after window, where a new bytearray's pages
    were zeroed and faulted in each time); and each image's sha256."""
    import pyarrow as pa

    ends = list(itertools.accumulate(j.size for j in jobs))
    if ends[-1] >= 1 << 31:
        raise LtError(f"{jobs[0].rel}: an image of {jobs[0].size:,} bytes is too large for a parquet row")
    starts = [0, *ends[:-1]]
    buffer = pa.allocate_buffer(ends[-1])
    view = memoryview(buffer).cast("B")
    into = reads_into(read)
    digests = [b""] * len(jobs)
    for i in source_order(jobs):
        if stopped():
            raise Stopped()
        image = view[starts[i]:ends[i]]
        into(jobs[i], image)
        digests[i] = hashlib.sha256(image).digest()
    images = _variable(pa.binary(), ends, buffer)
    encoded = [name(j).encode("utf-8") for j in jobs]
    names = _variable(pa.string(), list(itertools.accumulate(map(len, encoded))), b"".join(encoded))
    label_values = pa.py_buffer(array.array("q", [j.label for j in jobs]))  # (int64, native order)
    labels = pa.Array.from_buffers(pa.int64(), len(jobs), [None, label_values])
    image = pa.StructArray.from_arrays([images, names], fields=list(arrow.field("image").type))
    return pa.Table.from_arrays([image, labels, names], schema=arrow), digests


def _variable(kind, ends: list[int], data) -> object:
    """A binary or string array over `data` as it is, the values ending at `ends`. Built from
    buffers, not `pa.array` of a list: that first imports pandas (0.5 s and more per worker)."""
    import pyarrow as pa

    offsets = pa.py_buffer(array.array("i", [0, *ends]))
    values = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    return pa.Array.from_buffers(kind, len(ends), [None, offsets, values])


def render_card(out: Path, complete: dict[str, dict], bench: Benchmark) -> Optional[str]:
    """README.md as push_to_hub writes its front matter (dataset_info, configs), for the
    finished splits; None for none."""
    splits = [complete[s] for s in in_order(complete)]
    if not splits:
        return None
    sizes = sum(_size(out / sh["name"]) for r in splits for sh in r["shards"])
    lines = ["---", "dataset_info:", "  features:", "  - name: image", "    dtype: image",
             "  - name: label", "    dtype:", "      class_label:", "        names:"]
    lines += [f"          '{i}': {json.dumps(n)}" for i, n in enumerate(bench.classes)]
    lines += ["  - name: file_name", "    dtype: string", "  splits:"]
    for r in splits:
        lines += [f"  - name: {r['hf_split']}", f"    num_bytes: {r['num_bytes']}",
                  f"    num_examples: {sum(sh['examples'] for sh in r['shards'])}"]
    lines += [f"  download_size: {sizes}", f"  dataset_size: {sum(r['num_bytes'] for r in splits)}",
              "configs:", "- config_name: default", "  data_files:"]
    for r in splits:
        lines += [f"  - split: {r['hf_split']}", f"    path: data/{r['hf_split']}-*"]
    lines += ["---", "", MARK, "", f"# {bench.title}", "", *_about(bench), "", "```python", "import datasets",
              "ds = datasets.load_dataset(\"path/to/this/folder\")", "```", ""]
    return "\n".join(lines)


def _about(bench: Benchmark) -> list[str]:
    """The card's words on the dataset: ImageNet-LT's as before, another benchmark's from its entry."""
    if bench.name == "imagenet_lt":
        return ["ImageNet-LT (Liu et al., Large-Scale Long-Tailed Recognition in an Open World, CVPR 2019):",
                "a long-tailed subset of ILSVRC2012, built by ltextract from the ILSVRC2012 images, byte for",
                "byte (never re-encoded). `label` is the index of the wnid in the sorted 1000 ILSVRC2012 wnids;",
                "`file_name` is the image's name in ILSVRC2012. The images are subject to the ImageNet terms of",
                "access."]
    images = {"ilsvrc2012": "ILSVRC2012", "places365": "Places365"}[bench.images]
    name = "`<class>/<file>`" if not bench.unique_file_names else "the image's name"
    return [f"{bench.title}: a long-tailed benchmark of {len(bench.classes)} classes, built by ltextract from the",
            f"{images} images, byte for byte (never re-encoded). `label` is as its published lists write it",
            f"(the class names above, in label order); `file_name` is {name} in {images}. The images",
            f"are subject to the {images} terms of access.", "", "```bibtex", *bench.citation.splitlines(), "```"]


def _size(path: Path) -> int:
    """A shard's size for the card (a missing one counts 0: verify reports it)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
