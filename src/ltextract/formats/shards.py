"""The webdataset shard layout, apart from writing a build: which samples go into which shard
(`plan`, a pure function of the list and the shard size), a shard's bytes (`shard_chunks`), the
split's index `OUT/<split>.json`, and reading shards back (`shard_digests`, `check_shards`, with
the stdlib's tar reader, independent of the writer).

Each sample is `<key>.jpg` (the image bytes as in ILSVRC2012) and `<key>.cls` (the label as decimal
text), the layout the `webdataset` library and its ImageNet examples read. Train samples are
shuffled with a fixed seed so consecutive samples mix classes; val and test keep list order.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from ltextract.errors import LtError
from ltextract.files import atomic_write, expect, read_json, safe_rel
from ltextract.formats import Problem
from ltextract.out.manifest import Row
from ltextract.plan import Job
from ltextract.tar.header import BLOCK, padded

SHUFFLE_SEED = 0
FORMAT = "webdataset"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib|files?)\s*$", re.I)
_UNITS = {"b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


@dataclass(frozen=True)
class ShardSize:
    """A shard closes before it would pass `max_bytes` (tar bytes) or hold `max_files` samples."""
    max_bytes: Optional[int] = None
    max_files: Optional[int] = None

    def __str__(self) -> str:
        return f"{self.max_files} files" if self.max_files else f"{self.max_bytes} bytes"


@dataclass(frozen=True)
class Sample:
    job: Job
    key: str

    @property
    def tar_bytes(self) -> int:
        """Header + padded image, header + padded label."""
        return 2 * BLOCK + padded(self.job.size) + BLOCK


@dataclass(frozen=True)
class Shard:
    rel: str  # "<split>/<split>-000000.tar"
    samples: list[Sample]


def parse_shard_size(text: str) -> ShardSize:
    """`1GB`, `500MiB`, `2.5G` (bytes) or `5000files`; a bare number is ambiguous and refused."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r}: expected a size like 1GB, 512MiB or a count like 5000files")
    number, unit = float(m.group(1)), m.group(2).lower()
    if unit.startswith("file"):
        if not number.is_integer() or number < 1:
            raise ValueError(f"{text!r}: a shard holds a whole number (>= 1) of files")
        return ShardSize(max_files=int(number))
    size = int(number * _UNITS[unit])
    if size < 10 * BLOCK:
        raise ValueError(f"{text!r}: shards must be at least {10 * BLOCK} bytes")
    return ShardSize(max_bytes=size)


def sample_key(file_name: str) -> str:
    """webdataset splits a member name at the first dot, so the key is the name without its
    extension and with any other dots replaced."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name[1:] else file_name
    return stem.replace(".", "_")


def plan(split: str, jobs: list[Job], size: ShardSize, seed: int = SHUFFLE_SEED,
         by_class: bool = False) -> list[Shard]:
    """Samples in shard order: train shuffled with `seed`, other splits in list order.
    `by_class`: keys are `<class>/<stem>` (file names repeat across classes, as Places365's)."""
    samples = [Sample(j, f"{j.wnid}/{sample_key(j.rel.rsplit('/', 1)[1])}" if by_class else
                      sample_key(j.rel.rsplit("/", 1)[1])) for j in jobs]
    seen: dict[str, str] = {}
    for s in samples:
        if s.key in seen:
            raise LtError(f"{split}: {s.job.rel} and {seen[s.key]} would share the webdataset key {s.key!r}")
        seen[s.key] = s.job.rel
    if split == "train":
        random.Random(seed).shuffle(samples)
    shards: list[list[Sample]] = [[]]
    used = 0
    for s in samples:
        full = (len(shards[-1]) >= size.max_files) if size.max_files else \
            (used + s.tar_bytes + 2 * BLOCK > size.max_bytes)  # type: ignore[operator]
        if shards[-1] and full:
            shards.append([])
            used = 0
        shards[-1].append(s)
        used += s.tar_bytes
    return [Shard(f"{split}/{split}-{i:06d}.tar", group) for i, group in enumerate(shards) if group]


def identity(tar_identity: str, size: ShardSize, seed: int = SHUFFLE_SEED) -> str:
    """Journal header: shards made from another tar or with other parameters are redone."""
    return f"{tar_identity} {FORMAT} {size} seed={seed}"


# --- writing ----------------------------------------------------------------------------

def _header(name: str, size: int) -> bytes:
    """A ustar header, assembled directly (tarfile takes ~10x longer, and there are two per
    sample); names past 100 bytes go through tarfile's GNU long-name records."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 100 or size >= 8 ** 11:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        return info.tobuf(tarfile.GNU_FORMAT)
    block = bytearray(BLOCK)
    block[0:len(raw)] = raw
    block[100:148] = b"0000644\x000000000\x000000000\x00%011o\x0000000000000\x00" % size
    block[148:156] = b" " * 8  # the checksum counts its own field as spaces
    block[156] = ord("0")
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def shard_chunks(shard: Shard, read: Callable[[Job], bytes], digests: dict[str, str]) -> Iterator[bytes]:
    """A shard's bytes, sample by sample (each image read with `read`, its sha256 put in
    `digests`), then the end-of-archive blocks."""
    for s in shard.samples:
        data = read(s.job)
        digests[s.job.rel] = hashlib.sha256(data).hexdigest()
        label = str(s.job.label).encode()
        yield b"".join((_header(f"{s.key}.jpg", len(data)), data, bytes(padded(len(data)) - len(data)),
                        _header(f"{s.key}.cls", len(label)), label, bytes(BLOCK - len(label))))
    yield bytes(2 * BLOCK)


@dataclass(frozen=True)
class MemberDigest:
    size: int
    sha256: str
    head: bytes  # the first bytes: the whole label of a .cls member


def shard_digests(path: Path) -> dict[str, dict[str, MemberDigest]]:
    """key -> extension -> digest, streamed with the stdlib reader (independent of our writer)."""
    samples: dict[str, dict[str, MemberDigest]] = {}
    with tarfile.open(path) as tf:
        for m in tf:
            key, _, ext = m.name.partition(".")
            if not m.isreg() or ext in samples.setdefault(key, {}):
                raise LtError(f"{path}: unexpected or repeated member {m.name}")
            f = tf.extractfile(m)
            h, head = hashlib.sha256(), b""
            while chunk := f.read(1 << 20):  # type: ignore[union-attr]
                head = head or chunk[:32]
                h.update(chunk)
            samples[key][ext] = MemberDigest(m.size, h.hexdigest(), head)
    return samples


def index_path(out: Path, split: str) -> Path:
    return out / f"{split}.json"


def render_index(split: str, shards: list[Shard], sizes: dict[str, int]) -> dict:
    """Shard names relative to OUT with sample counts; `pattern` is webdataset's brace notation."""
    last = len(shards) - 1
    return {"format": FORMAT, "split": split, "samples": sum(len(s.samples) for s in shards),
            "shuffled": split == "train", "seed": SHUFFLE_SEED if split == "train" else None,
            "pattern": f"{split}/{split}-{{000000..{last:06d}}}.tar",
            "shards": [{"name": s.rel, "samples": len(s.samples), "size": sizes[s.rel]} for s in shards]}


def write_index(out: Path, split: str, shards: list[Shard]) -> None:
    sizes = {s.rel: os.stat(out / s.rel).st_size for s in shards}
    text = json.dumps(render_index(split, shards, sizes), indent=2) + "\n"
    atomic_write(index_path(out, split), text.encode())


def read_index(out: Path, split: str) -> dict:
    """`<split>.json`, checked as far as verify relies on it: each shard's name (a file of the
    split's folder), sample count and size."""
    path = index_path(out, split)
    data = expect(read_json(path, f"{path} is missing: was the build of {split} finished?"), dict,
                  path, "the whole")
    for i, sh in enumerate(expect(data.get("shards"), list, path, "shards")):
        expect(sh, dict, path, f"shards[{i}]")
        name = expect(sh.get("name"), str, path, f"shards[{i}].name")
        expect(sh.get("samples"), int, path, f"shards[{i}].samples")
        expect(sh.get("size"), int, path, f"shards[{i}].size")
        if not (name.startswith(f"{split}/") and safe_rel(name, 2)):
            raise LtError(f"{path}: shards[{i}].name {name[:80]!r} is not a shard of {split};"
                          " the file is damaged")
    return data

def check_shards(out: Path, split: str, rows: list[Row], workers: int,
                 progress: Optional[Callable[[int], None]]) -> list[Problem]:
    """Every manifest row is exactly once in its shard with the same bytes and label; the shard
    index's counts and sizes hold; nothing else lies in OUT/<split>."""


    index = read_index(out, split)
    by_key = {r.key: r for r in rows}
    problems: list[Problem] = []
    names = [sh["name"] for sh in index["shards"]]

    def digest(name: str) -> tuple[str, object]:
        try:
            return name, shard_digests(out / name)
        except FileNotFoundError:
            return name, "missing"
        except (tarfile.TarError, LtError, OSError) as e:
            return name, f"not a readable shard ({e})"

    seen: set[str] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for sh, (name, result) in zip(index["shards"], pool.map(digest, names)):
            if isinstance(result, str):
                problems.append(Problem(name, result, name))
                continue
            assert isinstance(result, dict)
            if len(result) != sh.get("samples") or os.path.getsize(out / name) != sh.get("size"):
                problems.append(Problem(name, f"differs from {split}.json (samples or size)", name))
            for key, parts in result.items():
                row = by_key.get(key)
                where = f"{name}/{key}"
                if row is None or row.shard != name:
                    problems.append(Problem(where, "sample not in the manifest for this shard", name))
                    continue
                seen.add(key)
                jpg, cls = parts.get("jpg"), parts.get("cls")
                if set(parts) != {"jpg", "cls"} or jpg is None or cls is None:
                    problems.append(Problem(where, f"members {sorted(parts)}, expected jpg and cls", name))
                elif (jpg.size, jpg.sha256) != (row.size, row.sha256):
                    problems.append(Problem(where, "image differs from the manifest (corrupt or modified)",
                                            name))
                elif cls.head != str(row.label).encode():
                    problems.append(Problem(where, f"label {cls.head!r} differs from the manifest's"
                                                   f" {row.label}", name))
                if progress:
                    progress(row.size)
    problems += [Problem(r.path, f"missing from {r.shard}", r.shard) for r in rows if r.key not in seen]
    listed = set(names)
    for entry in sorted(os.scandir(out / split) if (out / split).is_dir() else [], key=lambda e: e.name):
        if f"{split}/{entry.name}" not in listed:
            problems.append(Problem(f"{split}/{entry.name}", "stray file (not in the shard index)"))
    return problems
