"""ImageNet as the Hugging Face Hub ships it (`ILSVRC/imagenet-1k`), made from an ILSVRC2012-shaped
manual dir (`make_manual_dir`): the same images, so a build from either Hub shape must give what a
build from the tars gives, file for file and byte for byte.

- `tar.gz`: `data/train_images_0.tar.gz` … `_4`, `data/val_images.tar.gz`, `data/test_images.tar.gz`,
  flat tars of `<file>_<wnid>.JPEG` (the train images spread over the five at random), gzip -6;
- `parquet`: `data/{train,validation,test}-NNNNN-of-NNNNN.parquet`, rows `image {bytes, path}` and
  `label` (the sorted-wnid index; -1 for test) in the order the Hub's converter wrote them (the
  tar.gz shards' order, cut into contiguous shards), row groups of 100 rows, SNAPPY, the
  `huggingface` schema metadata. Needs pyarrow (the `hub` extra).

As on the Hub, only `.JPEG` members are carried over, and the unlabelled `test` shards hold
images of their own that no list names."""
from __future__ import annotations

import json
import mmap
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ltextract.benchmarks.classes import label_of, wnids
from ltextract.files import atomic_writer
from ltextract.synth.images import make_tiny_jpeg
from ltextract.synth.tars import Tar
from ltextract.tar.index import scan

SHAPES = ("parquet", "tar.gz")
PREFIXES = ("", "./", "train/")  # before tar.gz member names; the Hub's are bare (basename them)
FLUSH_MEMBERS = 2048


@dataclass(frozen=True)
class HubSpec:
    shape: str = "parquet"
    seed: int = 0
    train_shards: int = 3  # parquet (the Hub has 294); the tar.gz train set is always 5
    val_shards: int = 2  # parquet (the Hub has 14)
    row_group: int = 100  # rows per row group, as the Hub's converter wrote them
    level: int = 6  # gzip level of the tar.gz shards
    prefix: str = ""  # tar.gz member name prefix: "" | "./" | "train/"
    test_images: int = 3  # images in the unlabelled test shards

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, not {self.shape!r}")
        if self.prefix not in PREFIXES:
            raise ValueError(f"prefix must be one of {PREFIXES}, not {self.prefix!r}")
        if min(self.train_shards, self.val_shards, self.row_group) < 1:
            raise ValueError("shard and row group counts must be at least 1")


@dataclass(frozen=True)
class Image:
    hub_name: str  # <file>_<wnid>.JPEG
    wnid: str
    data: memoryview


@dataclass(frozen=True)
class HubResult:
    data_dir: Path  # the folder holding the shards (`<out>/data`)
    shards: dict[str, list[Path]]  # "train" | "val" | "test" -> shards in order


def make_hub_dir(train_tar: Path, val_tar: Path, test_list: Path, out: Path,
                 spec: HubSpec = HubSpec()) -> HubResult:
    """Write the Hub's shards of the images in `train_tar` and `val_tar` into `out/data`; each
    val image's wnid comes from `test_list` (ImageNet-LT's test split is the ILSVRC val set)."""
    rng = random.Random(spec.seed)
    val_wnids = {}
    for line in test_list.read_text().splitlines():
        _, wnid, file = line.split()[0].split("/")
        val_wnids[file] = wnid
    data = out / "data"
    with open(train_tar, "rb") as tf, open(val_tar, "rb") as vf, \
            mmap.mmap(tf.fileno(), 0, access=mmap.ACCESS_READ) as train_buf, \
            mmap.mmap(vf.fileno(), 0, access=mmap.ACCESS_READ) as val_buf:
        shards = _write(data, list(_images(train_tar, train_buf, True, {})),
                        list(_images(val_tar, val_buf, False, val_wnids)), spec, rng)
    return HubResult(data, shards)


def _write(data: Path, train: list[Image], val: list[Image], spec: HubSpec,
           rng: random.Random) -> dict[str, list[Path]]:
    """(A function of its own: the images' views into the tars are gone once it returns.)"""
    rng.shuffle(train)  # classes spread over the shards, as the Hub's copy seems to have them
    train_parts = [train[i::5] for i in range(5)]  # the five train_images_<i>.tar.gz
    test = [Image(f"ILSVRC2012_test_{i:08d}.JPEG", "", memoryview(make_tiny_jpeg(-1 - i)))
            for i in range(spec.test_images)]
    if spec.shape == "tar.gz":
        return {"train": [_write_targz(data / f"train_images_{i}.tar.gz", part, spec)
                          for i, part in enumerate(train_parts)],
                "val": [_write_targz(data / "val_images.tar.gz", val, spec)],
                "test": [_write_targz(data / "test_images.tar.gz", test, spec)]}
    ordered = [image for part in train_parts for image in part]
    return {"train": _write_parquet(data, "train", ordered, spec.train_shards, spec),
            "val": _write_parquet(data, "validation", val, spec.val_shards, spec),
            "test": _write_parquet(data, "test", test, 1, spec)}


def _images(tar: Path, buf: mmap.mmap, nested: bool, wnid_of: dict[str, str]) -> Iterator[Image]:
    """Every `.JPEG` member, named as the Hub names it."""
    with memoryview(buf) as view:
        for group, members in scan(tar, nested).iter_groups():
            for m in members:
                name = m.name.rpartition("/")[2]
                wnid = group.name[:-4] if nested else wnid_of.get(name, "")
                if name.endswith(".JPEG") and wnid:
                    yield Image(f"{name[:-5]}_{wnid}.JPEG", wnid, view[m.offset:m.offset + m.size])


def _write_targz(path: Path, images: list[Image], spec: HubSpec) -> Path:
    tar = Tar("gnu")
    with atomic_writer(path) as f:
        gz = zlib.compressobj(spec.level, zlib.DEFLATED, 31)
        for i, image in enumerate(images, 1):
            tar.add(spec.prefix + image.hub_name, [image.data])
            if i % FLUSH_MEMBERS == 0:
                _compress(f, gz, tar)
        tar.finish()
        _compress(f, gz, tar)
        f.write(gz.flush())
    return path


def _compress(f: BinaryIO, gz: "zlib._Compress", tar: Tar) -> None:
    f.write(gz.compress(b"".join(tar.chunks)))
    tar.chunks = []


def _write_parquet(data: Path, split: str, images: list[Image], count: int, spec: HubSpec) -> list[Path]:
    """`count` contiguous shards, sizes as `datasets`' push_to_hub cuts them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {"image": {"_type": "Image"}, "label": {"names": list(wnids()), "_type": "ClassLabel"}}
    schema = pa.schema([("image", image_type), ("label", pa.int64())]).with_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})})
    div, mod = divmod(len(images), count)
    paths = []
    for i in range(count):
        start = div * i + min(i, mod)
        rows = images[start:start + div + (i < mod)]
        path = data / f"{split}-{i:05d}-of-{count:05d}.parquet"
        with atomic_writer(path) as f, pq.ParquetWriter(f, schema) as writer:
            for g in range(0, len(rows), spec.row_group):
                group = rows[g:g + spec.row_group]
                images_col = pa.array([{"bytes": bytes(r.data), "path": r.hub_name} for r in group], image_type)
                labels = pa.array([label_of()[r.wnid] if r.wnid else -1 for r in group], pa.int64())
                writer.write_table(pa.Table.from_arrays([images_col, labels], schema=schema),
                                   row_group_size=spec.row_group)
        paths.append(path)
    return paths
