"""`--format webdataset`: the split as tar shards `OUT/<split>/<split>-000000.tar`, ...

Each sample is `<key>.jpg` (the image bytes as in ILSVRC2012) and `<key>.cls` (the label as decimal
text), the layout the `webdataset` library and its ImageNet examples read. Train samples are
shuffled with a fixed seed so consecutive samples mix classes; val and test keep list order.
`OUT/<split>.json` lists the shards with their sample counts. The plan is a pure function of the
list and the shard size, so a re-run keeps every journaled shard and rewrites only the rest.
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
from typing import Callable, Optional

from ltextract import multipart
from ltextract.base import LtError, TarError, atomic_write, read_json
from ltextract.extract import Job, write_error
from ltextract.outdir import (TMP_SUFFIX, Done, Folders, Journal, ensure_dir, journal_path,
                              place_atomically, read_journal)
from ltextract.manifest import Row
from ltextract.tarheader import BLOCK, padded

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


def plan(split: str, jobs: list[Job], size: ShardSize, seed: int = SHUFFLE_SEED) -> list[Shard]:
    """Samples in shard order: train shuffled with `seed`, other splits in list order."""
    samples = [Sample(j, sample_key(j.rel.rsplit("/", 1)[1])) for j in jobs]
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


def write_shard(folders: Folders, shard: Shard,
                read: Callable[[Job], bytes]) -> tuple[Done, dict[str, str]]:
    """Write one shard atomically; return it as journal entry and each sample's image sha256."""
    digests: dict[str, str] = {}
    shard_hash = hashlib.sha256()
    written = 0

    def fill(fd: int) -> None:
        nonlocal written
        with open(fd, "wb", closefd=False) as f:
            for s in shard.samples:
                data = read(s.job)
                digests[s.job.rel] = hashlib.sha256(data).hexdigest()
                label = str(s.job.label).encode()
                chunk = b"".join((_header(f"{s.key}.jpg", len(data)), data,
                                  bytes(padded(len(data)) - len(data)),
                                  _header(f"{s.key}.cls", len(label)), label, bytes(BLOCK - len(label))))
                shard_hash.update(chunk)
                written += f.write(chunk)
            written += f.write(bytes(2 * BLOCK))
            shard_hash.update(bytes(2 * BLOCK))

    mtime_ns = place_atomically(folders, shard.rel, fill)
    return Done(shard.rel, written, mtime_ns, shard_hash.hexdigest()), digests


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


def _kept_digests(out: Path, shard: Shard) -> dict[str, str]:
    samples = shard_digests(out / shard.rel)
    try:
        return {s.job.rel: samples[s.key]["jpg"].sha256 for s in shard.samples}
    except KeyError:
        raise LtError(f"{out / shard.rel} does not hold the samples its journal promises;"
                      " delete it and re-run") from None


@dataclass
class SplitResult:
    shards: list[Shard]
    digests: dict[str, str]  # job.rel -> image sha256
    copied: int  # shards written by this run
    kept: int

    def rows(self, jobs: list[Job]) -> list[Row]:
        """Manifest rows in list order, each saying which shard and key hold the image."""
        where = {s.job.rel: (sh.rel, s.key) for sh in self.shards for s in sh.samples}
        return [Row(j.rel, j.label, j.wnid, j.size, self.digests[j.rel], *where[j.rel]) for j in jobs]


def build_split(out: Path, split: str, jobs: list[Job], size: ShardSize, tar_identity: str,
                workers: int, progress: Callable[[int], None]) -> SplitResult:
    """Write the shards still missing (a thread per shard), then the split's shard index."""
    ensure_dir(out / split)
    shards = plan(split, jobs, size)
    ident = identity(tar_identity, size)
    journal = read_journal(out, split, ident)
    names = {sh.rel for sh in shards}
    ours = _written_before(out, split)
    for entry in os.scandir(out / split):  # leftovers of ours; files we did not write are left
        if entry.name.endswith(TMP_SUFFIX) or (f"{split}/{entry.name}" in ours - names):
            os.unlink(entry.path)
    kept_done, todo = [], []
    for sh in shards:
        done = journal.get(sh.rel)
        try:
            st = os.lstat(out / sh.rel)
        except FileNotFoundError:
            st = None
        if done and st and (st.st_size, st.st_mtime_ns) == (done.size, done.mtime_ns):
            kept_done.append((sh, done))
        else:
            todo.append(sh)
    digests: dict[str, str] = {}
    for sh, _ in kept_done:
        digests.update(_kept_digests(out, sh))
    files = {j.tar for j in jobs}
    many = len(files) > 2  # a tree or class tars: open each file when it is read
    readers = {} if many else {tar: multipart.open_bytes(tar) for tar in files}

    def read(job: Job) -> bytes:
        if many:
            with open(job.tar, "rb", buffering=0) as f:
                data = os.pread(f.fileno(), job.size, job.offset)
        else:
            data = readers[job.tar].read(job.offset, job.size)
        if len(data) != job.size:
            raise TarError(f"{job.tar} is truncated: {job.rel} needs bytes up to {job.offset + job.size:,}")
        return data

    def run(sh: Shard) -> tuple[Done, dict[str, str]]:
        result = write_shard(folders, sh, read)
        progress(sum(s.job.size for s in sh.samples))
        return result

    jl = Journal(out, split, ident, [d for _, d in kept_done])
    folders = Folders(out)
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ltx-shard") as pool:
            for done, sample_digests in pool.map(run, todo):
                jl.add(done)
                jl.flush()  # a killed run keeps every shard finished before it
                digests.update(sample_digests)
    except OSError as e:
        raise LtError(write_error(out, e)) from None
    finally:
        jl.close()
        folders.close()
        for reader in readers.values():
            reader.close()
    write_index(out, split, shards)
    return SplitResult(shards, digests, len(todo), len(kept_done))


def _written_before(out: Path, split: str) -> set[str]:
    """Shards any earlier run journaled, whatever its parameters were."""
    try:
        with open(journal_path(out, split), encoding="utf-8", errors="surrogateescape") as f:
            header = f.readline().rstrip("\n")
    except FileNotFoundError:
        return set()
    return set(read_journal(out, split, header))


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
    path = index_path(out, split)
    data = read_json(path, f"{path} is missing: was the build of {split} finished?")
    if not isinstance(data, dict) or not isinstance(data.get("shards"), list):
        raise LtError(f"{path} is not an ltextract shard index")
    return data

