"""`--format tfds`: OUT/imagenet_lt/1.0.0/, the folder TensorFlow Datasets' own `imagenet_lt`
builder prepares, so `tfds.load('imagenet_lt', data_dir=OUT)` and `tfds.data_source(...)` read
it with no builder run: per split (train, validation, test) the same examples in the same order,
the same shards, the same dataset_info.json as TFDS 4.9.10 writes from the same tars.

Each split's examples are ordered as TFDS orders them (ascending md5 of split name + file name)
and cut into its number of shards (`shard_count`), all before a byte is read. A TFRecord
record's length, and so its offset in its shard, follows from the file name, image size and
label: a shard is written in one pass with its images read in the order they lie in the tar,
each record written at its own offset. ArrayRecord (TFDS's `ArrayRecordWriter(path,
'group_size:1')`, zstd inside) is written in record order, its images read a window at a time.

TFDS labels its test split by position in the sorted names of the val tar (from its bundled
ground truth), ltextract by name from the test list: equal for the real 50,000-image tar.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterator

from ltextract.benchmarks import Benchmark
from ltextract.errors import LtError, UsageError
from ltextract.files import atomic_write, unlink_quietly
from ltextract.formats import Options, Problem, Read, need_extra, tfds_info, tfrecord
from ltextract.formats.sharded_check import Damaged
from ltextract.formats.sharded import (Shard, ShardedWriter, Stopped, in_order, library_split,
                                       out_benchmark, prefetched, read_window, recorded, source_order)
from ltextract.out.journal import read_journal_entries
from ltextract.plan import Job

MIN_SHARD, MAX_SHARD = 64 << 20, 1024 << 20  # TFDS's ShardConfig defaults


def shard_count(num_bytes: int, examples: int) -> int:
    """TFDS's `ShardConfig.calculate_number_shards`: `num_bytes` of serialized examples."""
    total = num_bytes + examples * tfrecord.OVERHEAD
    most, least = total // MIN_SHARD, total // MAX_SHARD
    if least <= 1024 <= most and examples >= 1024:
        return 1024
    if least > 1024:
        n = 2048
        while not (n >= least and examples >= n):
            if n > examples:  # TFDS would search forever; no real split comes near (> 1 TiB)
                raise LtError(f"{examples:,} examples of {total:,} bytes cannot be sharded as TFDS does")
            n += 1024
        return n
    return next((n for n in (512, 256, 128, 64, 32, 16, 8, 4, 2) if least <= n <= most and examples >= n), 1)


def shard_bounds(examples: int, shards: int) -> list[int]:
    """Where each shard ends: Python's round(), half to even, as TFDS's `get_shard_boundaries`."""
    return [round(examples * i / shards) for i in range(1, shards + 1)]


def order_key(split: str, name: str) -> bytes:
    """TFDS's example order: ascending int(md5(split + key)); the digest's bytes sort alike."""
    return hashlib.md5((split + name).encode("utf-8")).digest()


def list_bytes(bench: Benchmark, split: str, jobs: list[Job]) -> int:
    """The size of the split's list as TFDS downloads it ("<origin>/<wnid>/<file> <label>\\n")."""
    origin = bench.split(split).origin
    return sum(len(origin) + len(j.wnid) + len(j.rel.rpartition("/")[2]) + len(str(j.label)) + 4
               for j in jobs)


class TfdsWriter(ShardedWriter):
    name = "tfds"
    options_used = ("tfds_file_format",)

    @classmethod
    def usable(cls, options: Options) -> None:
        super().usable(options)
        fmt = options.tfds_file_format
        if fmt not in tfds_info.FILE_FORMATS:
            raise UsageError(f"--tfds-file-format {fmt!r}: expected one of {', '.join(tfds_info.FILE_FORMATS)}")
        need_extra("google_crc32c" if fmt == "tfrecord" else "array_record", "tfds", "tfds")

    def __init__(self, out: Path, options: Options) -> None:
        super().__init__(out, options)
        self.file_format = options.tfds_file_format
        self.num_bytes: dict[str, int] = {}  # per split: its serialized examples' bytes
        self.dataset = tfds_info.dataset(self.benchmark)

    @property
    def folder(self) -> str:
        return self.dataset.folder

    def identity(self, source: str) -> str:
        return f"{source} tfds {self.file_format}"

    def shard_bytes(self, shard: Shard) -> int:
        """TFRecord: exactly; ArrayRecord compresses each record (images hardly shrink) and pads
        the file to 64 KiB."""
        length = tfrecord.record_length
        name = self.example_name
        return sum(length(name(j), j.size, j.label) + tfrecord.OVERHEAD for j in shard.jobs) + (64 << 10)

    def owns(self, name: str, split: str) -> bool:
        return name.startswith(f"{self.dataset.name}-{library_split(split)}.")

    def begin(self, jobs, identities, partial):
        """One OUT holds one file format (dataset_info.json names one), and never a TFDS build
        ltextract did not write."""
        for split, record in recorded(self.out, self.name).items():
            if record.get("file_format") != self.file_format:
                raise LtError(f"{self.out / self.folder} holds a --tfds-file-format"
                              f" {record.get('file_format')} build ({split}); remove it or use another --out")
        info = self.out / self.folder / tfds_info.INFO
        if info.exists() and not any(rel.startswith(self.folder + "/") for split in self.benchmark.split_names
                                     for rel in read_journal_entries(self.out, split).done):
            raise LtError(f"{info.parent} holds a TFDS build ltextract did not write; remove it or use another --out")
        return super().begin(jobs, identities, partial)

    def plan(self, split: str, jobs: list[Job]) -> list[Shard]:
        name, example = library_split(split), self.example_name
        keys = [order_key(name, example(j)) for j in jobs]
        order = sorted(range(len(jobs)), key=keys.__getitem__)
        for a, b in zip(order, order[1:]):
            if keys[a] == keys[b]:
                raise LtError(f"{split}: {jobs[a].rel} and {jobs[b].rel} share the file name TFDS keys"
                              " its examples by")
        ordered = [jobs[i] for i in order]
        length = tfrecord.record_length
        num_bytes = self.num_bytes[split] = sum([length(example(j), j.size, j.label) for j in jobs])
        count = shard_count(num_bytes, len(ordered))
        starts = [0, *shard_bounds(len(ordered), count)]
        return [Shard(f"{self.folder}/{tfds_info.shard_name(name, self.file_format, i, count, self.dataset.name)}",
                      split, ordered[starts[i]:starts[i + 1]]) for i in range(count)]

    def split_meta(self, split: str, shards: list[Shard]) -> dict:
        jobs = [j for sh in shards for j in sh.jobs]
        return {**super().split_meta(split, shards), "file_format": self.file_format,
                "tfds_split": library_split(split), "list_bytes": list_bytes(self.benchmark, split, jobs),
                "num_bytes": self.num_bytes[split]}

    def write_index(self, complete: dict[str, dict]) -> None:
        """dataset_info.json lists the finished splits (TFDS takes the folder as prepared once
        it exists: without a finished split, there is none)."""
        folder = self.out / self.folder
        atomic_write(folder / tfds_info.FEATURES, tfds_info.render_features(len(self.benchmark.classes)).encode())
        atomic_write(folder / tfds_info.LABELS, tfds_info.render_labels(self.benchmark.classes).encode())
        text = render_info(complete, self.benchmark)
        if text is None:
            unlink_quietly(folder / tfds_info.INFO)
        else:
            atomic_write(folder / tfds_info.INFO, text.encode())

    # --- worker -------------------------------------------------------------------------
    def write_shard(self, fd: int, shard: Shard, read: Read, stopped: Callable[[], bool]) -> list[bytes]:
        if self.file_format == "tfrecord":
            return write_tfrecord(fd, shard.jobs, read, stopped, self.example_name)
        return write_array_record(fd, shard.jobs, read, stopped, self.example_name)

    # --- verify -------------------------------------------------------------------------
    @classmethod
    def for_record(cls, out: Path, record: dict) -> TfdsWriter:
        return cls(out, Options(tfds_file_format=str(record.get("file_format", "tfrecord")),
                                benchmark=out_benchmark(out)))

    @classmethod
    def read_shard(cls, path: Path, record: dict) -> Iterator[tuple[str, int, bytes]]:
        try:
            for data in _records(path, record.get("file_format")):
                example = tfrecord.parse_example(data)
                yield example.file_name, example.label, example.image
        except tfrecord.Damaged as e:
            raise Damaged(str(e)) from None

    @classmethod
    def index_files(cls) -> set[str]:
        return {tfds_info.INFO, tfds_info.FEATURES, tfds_info.LABELS}

    def check_index(self, records: dict[str, dict]) -> list[Problem]:
        """dataset_info.json, features.json and label.labels.txt as the build writes them."""
        want = {tfds_info.INFO: render_info(records, self.benchmark),
                tfds_info.FEATURES: tfds_info.render_features(len(self.benchmark.classes)),
                tfds_info.LABELS: tfds_info.render_labels(self.benchmark.classes)}
        problems = []
        for name, text in want.items():
            path = self.out / self.folder / name
            try:
                same = path.read_bytes() == (text or "").encode()
            except FileNotFoundError:
                problems.append(Problem(f"{self.folder}/{name}", "missing"))
                continue
            if not same:
                problems.append(Problem(f"{self.folder}/{name}", "differs from what the build wrote"
                                                                  " for its finished splits"))
        return problems


def render_info(complete: dict[str, dict], bench: Benchmark) -> str | None:
    """dataset_info.json of the finished splits (each with its record), None for none."""
    splits = [complete[s] for s in in_order(complete)]
    if not splits:
        return None
    fmt = splits[0]["file_format"]
    download = sum(complete[s]["list_bytes"] if s in complete else bench.split(s).pin.size
                   for s in ("train", "val"))  # the two lists TFDS's builder downloads
    return tfds_info.render_info(fmt, [(r["tfds_split"], r["num_bytes"], [sh["examples"] for sh in r["shards"]])
                                       for r in splits], download, tfds_info.dataset(bench))


def write_tfrecord(fd: int, jobs: list[Job], read: Read, stopped: Callable[[], bool],
                   name: Callable[[Job], str]) -> list[bytes]:
    """Every record at its offset, computed up front; images read in the order of the tar;
    `name`: each example's `file_name`."""
    from google_crc32c import extend, value

    parts = [tfrecord.example_parts(name(j), j.size, j.label) for j in jobs]
    offsets, at = [], 0
    for (head, tail), job in zip(parts, jobs):
        offsets.append(at)
        at += len(head) + job.size + len(tail) + tfrecord.OVERHEAD
    digests = [b""] * len(jobs)
    for i in source_order(jobs):
        if stopped():
            raise Stopped()
        data = read(jobs[i])
        _check_size(jobs[i], data)
        head, tail = parts[i]
        before, after = tfrecord.frame(extend(extend(value(head), data), tail), len(head) + len(data) + len(tail),
                                       value)
        _pwrite_all(fd, [before, head, data, tail, after], offsets[i])
        digests[i] = hashlib.sha256(data).digest()
    return digests


def write_array_record(fd: int, jobs: list[Job], read: Read, stopped: Callable[[], bool],
                       name: Callable[[Job], str]) -> list[bytes]:
    """As TFDS writes ArrayRecord: `ArrayRecordWriter(path, 'group_size:1')`, records in order."""
    from array_record.python.array_record_module import ArrayRecordWriter

    digests = []
    try:
        writer = ArrayRecordWriter(f"/proc/self/fd/{fd}", "group_size:1")  # the file place_atomically made
        try:
            for _, records in prefetched(jobs, lambda window: _records_of(window, read, stopped, name)):
                for record, digest in records:
                    writer.write(record)
                    digests.append(digest)
        finally:
            writer.close()
    except RuntimeError as e:  # riegeli words an OS error in its message
        raise _os_error(str(e)) from None
    return digests


def _records_of(jobs: list[Job], read: Read, stopped: Callable[[], bool],
                name: Callable[[Job], str]) -> list[tuple[bytes, bytes]]:
    """Each job's whole record and its image's sha256, the images read in the order of the tar."""
    out = []
    for job, data in zip(jobs, read_window(jobs, read, stopped)):
        _check_size(job, data)
        head, tail = tfrecord.example_parts(name(job), job.size, job.label)
        out.append((head + data + tail, hashlib.sha256(data).digest()))
    return out


def _os_error(message: str) -> OSError:
    import errno

    if "No space left" in message:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, message)


def _check_size(job: Job, data: bytes) -> None:
    if len(data) != job.size:  # the index promised another size: the source changed under us
        raise LtError(f"{job.file}: {job.rel} holds {len(data):,} bytes, its index {job.size:,};"
                      " the source changed during the build, re-run it")


def _pwrite_all(fd: int, buffers: list[bytes], offset: int) -> None:
    total = sum(map(len, buffers))
    written = os.pwritev(fd, buffers, offset)
    if written != total:  # a short write (rare): the rest one piece at a time
        rest = memoryview(b"".join(buffers))[written:]
        offset += written
        while rest:
            n = os.pwrite(fd, rest, offset)
            rest, offset = rest[n:], offset + n


def _records(path: Path, file_format: object) -> Iterator[bytes]:
    if file_format == "array_record":
        from array_record.python.array_record_module import ArrayRecordReader

        if not path.exists():
            raise FileNotFoundError(path)
        try:
            reader = ArrayRecordReader(os.fspath(path))
        except (RuntimeError, ValueError) as e:
            raise Damaged(str(e)) from None
        try:
            total = reader.num_records()
            for start in range(0, total, 256):
                yield from reader.read(start, min(total, start + 256))
        except (RuntimeError, ValueError) as e:
            raise Damaged(str(e)) from None
        finally:
            reader.close()
        return
    from google_crc32c import value

    with open(path, "rb") as f:
        yield from tfrecord.read_records(f, value)
