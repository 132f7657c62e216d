"""`--format webdataset`: the split as tar shards `OUT/<split>/<split>-000000.tar`, ...

Each sample is `<key>.jpg` (the image bytes as in ILSVRC2012) and `<key>.cls` (the label as decimal
text), the layout the `webdataset` library and its ImageNet examples read; where file names
repeat across classes (Places365's), the key is `<class>/<stem>`. Train samples are
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
from typing import Callable, Collection, Iterable, Iterator, Optional

from ltextract.errors import LtError
from ltextract.files import atomic_write, read_json
from ltextract.formats import Problem, Progress, Read, SplitWork, Writer, describe_shards, shard_counts
from ltextract.out import TMP_SUFFIX, manifest
from ltextract.out.folders import Folders, ensure_dir, place_atomically
from ltextract.out.journal import Batch, Done, Journal, close_all, journal_line, journal_path, read_journal
from ltextract.out.manifest import Row
from ltextract.out.resume import check_space
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


class WebdatasetWriter(Writer):
    name = FORMAT
    needs_sizes = True  # shards are planned by size
    options_used = ("shard_size",)

    def __init__(self, out: Path, options) -> None:
        super().__init__(out, options)
        self.size: ShardSize = options.shard_size or ShardSize(max_bytes=10**9)
        self.shards: dict[str, list[Shard]] = {}
        self.by_rel: dict[str, Shard] = {}
        self.kept: dict[str, list[Done]] = {}  # journaled shards still whole, per split

    def begin(self, jobs: dict[str, list[Job]], identities: dict[str, str],
              partial: Collection[str]) -> list[SplitWork]:
        """Shards are a pure function of the list and the shard size, so a re-run keeps every
        journaled shard still whole and rewrites only the rest."""
        works = []
        for split, split_jobs in jobs.items():
            ensure_dir(self.out / split)
            by_class = self.options.benchmark is not None and not self.options.benchmark.unique_file_names
            shards = self.shards[split] = plan(split, split_jobs, self.size, by_class=by_class)
            self.by_rel.update((sh.rel, sh) for sh in shards)
            ident = identity(identities[split], self.size)
            journal = read_journal(self.out, split, ident)
            names = {sh.rel for sh in shards}
            ours = _written_before(self.out, split)
            for entry in os.scandir(self.out / split):  # leftovers of ours; files we did not write are left
                if entry.name.endswith(TMP_SUFFIX) or (f"{split}/{entry.name}" in ours - names):
                    os.unlink(entry.path)
            kept, todo, digests = [], [], {}
            for sh in shards:
                done = journal.get(sh.rel)
                try:
                    st = os.lstat(self.out / sh.rel)
                except FileNotFoundError:
                    st = None
                if done and st and (st.st_size, st.st_mtime_ns) == (done.size, done.mtime_ns):
                    kept.append(done)
                    digests.update(_kept_digests(self.out, sh))
                else:
                    todo.append(sh)
            self.kept[split] = kept
            samples = [Done(j.rel, j.size, 0, digests[j.rel]) for j in split_jobs if j.rel in digests]
            works.append(SplitWork(split, split_jobs, ident, samples,
                                   [s.job for sh in todo for s in sh.samples], units=todo))
        check_space(self.out, [j for w in works for j in w.todo])
        return works

    def units(self, works: list[SplitWork]) -> list[Shard]:
        return [sh for w in works for sh in w.units]

    @staticmethod
    def unit_files(unit: Shard) -> int:
        return len(unit.samples)

    def write_unit(self, unit: Shard, read: Read, stopped: Callable[[], bool]) -> Batch:
        """One shard, written whole (a stop leaves only its temporary file, removed next run)."""
        assert self.folders is not None, "open() first"
        split = unit.rel.split("/", 1)[0]
        shard, digests = write_shard(self.folders, unit, read)
        raw = b"".join(bytes.fromhex(digests[s.job.rel]) for s in unit.samples)  # 32 bytes each:
        return Batch({}, {split: journal_line(shard)}, sum(s.job.size for s in unit.samples),  # a
                     {"shard": unit.rel, "digests": raw})  # tenth of the pickling Done records cost

    def record(self, works: list[SplitWork], batches: Iterable[Batch],
               on_whole: Optional[Callable[[SplitWork, dict[str, Done]], None]] = None
               ) -> dict[str, dict[str, Done]]:
        done = {w.split: {d.rel: d for d in w.kept} for w in works}
        journals = {w.split: Journal(self.out, w.split, w.identity, self.kept[w.split]) for w in works}
        try:
            for finished in batches:
                for split, lines in finished.lines.items():
                    journals[split].write(lines)
                    journals[split].flush()  # a killed run keeps every shard finished before it
                if finished.extra:  # a shard: its samples' digests, in shard order
                    shard, raw = self.by_rel[finished.extra["shard"]], finished.extra["digests"]
                    done[shard.rel.split("/", 1)[0]].update(
                        (s.job.rel, Done(s.job.rel, s.job.size, 0, raw[32 * i:32 * i + 32].hex()))
                        for i, s in enumerate(shard.samples))
        finally:
            close_all(batches, journals.values())
        return done

    @classmethod
    def check(cls, out: Path, split: str, rows: list[Row], record: dict, workers: int,
              progress: Progress) -> Iterator[Problem]:
        """Every sample read back from its shard (with the stdlib's tar reader)."""
        yield from check_shards(out, split, rows, workers, progress)

    def finish(self, work: SplitWork, done: dict[str, Done], list_name: str,
               source: dict) -> tuple[list[Row], dict, dict]:
        shards = self.shards[work.split]
        write_index(self.out, work.split, shards)
        where = {s.job.rel: (sh.rel, s.key) for sh in shards for s in sh.samples}
        rows = [Row(j.rel, j.label, j.wnid, j.size, done[j.rel].sha256, *where[j.rel]) for j in work.jobs]
        manifest.write_split(self.out, work.split, rows, class_column=self.options.class_column)
        meta = {"format": FORMAT, "shards": len(shards), "shard_size": str(self.size)}
        return rows, meta, shard_counts(len(shards), len(self.kept[work.split]))

    @staticmethod
    def describe(split: str, record: dict) -> str:
        return describe_shards(split, record, record["shards"], "samples")



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

def check_shards(out: Path, split: str, rows: list[Row], workers: int,
                 progress: Optional[Callable[[int], None]]) -> list[Problem]:
    """Every manifest row is exactly once in its shard with the same bytes and label; the shard
    index's counts and sizes hold; nothing else lies in OUT/<split>."""


    index = read_index(out, split)
    by_key = {r.key: r for r in rows}
    problems: list[Problem] = []
    names = [str(sh.get("name", "")) for sh in index["shards"]]

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
                problems.append(Problem(name, result))
                continue
            assert isinstance(result, dict)
            if len(result) != sh.get("samples") or os.path.getsize(out / name) != sh.get("size"):
                problems.append(Problem(name, f"differs from {split}.json (samples or size)"))
            for key, parts in result.items():
                row = by_key.get(key)
                where = f"{name}/{key}"
                if row is None or row.shard != name:
                    problems.append(Problem(where, "sample not in the manifest for this shard"))
                    continue
                seen.add(key)
                jpg, cls = parts.get("jpg"), parts.get("cls")
                if set(parts) != {"jpg", "cls"} or jpg is None or cls is None:
                    problems.append(Problem(where, f"members {sorted(parts)}, expected jpg and cls"))
                elif (jpg.size, jpg.sha256) != (row.size, row.sha256):
                    problems.append(Problem(where, "image differs from the manifest (corrupt or modified)"))
                elif cls.head != str(row.label).encode():
                    problems.append(Problem(where, f"label {cls.head!r} differs from the manifest's"
                                                   f" {row.label}"))
                if progress:
                    progress(row.size)
    problems += [Problem(r.path, f"missing from {r.shard}") for r in rows if r.key not in seen]
    listed = set(names)
    for entry in sorted(os.scandir(out / split) if (out / split).is_dir() else [], key=lambda e: e.name):
        if f"{split}/{entry.name}" not in listed:
            problems.append(Problem(f"{split}/{entry.name}", "stray file (not in the shard index)"))
    return problems
