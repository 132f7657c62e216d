"""The copy engine: each unit of work a writer cut (a run of files, a shard) is written in a
forked worker process, its examples' bytes read from their source; or, for a tar read in one
sequential pass (the stream strategy), each wanted member as it goes by. Knows sources' readers
and writers only through their methods: it never imports a writer."""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Optional

from ltextract.errors import LtError, write_error
from ltextract.out.journal import Batch, batch
from ltextract.sources import stream
from ltextract.workers import can_fork, fork_each, fork_map

if TYPE_CHECKING:
    from ltextract.formats import Read, Writer
    from ltextract.out.journal import Done
    from ltextract.plan import Job
    from ltextract.sources import ShardRead

Names = Callable[["Job", str], tuple[str, ...]]

PARALLEL_MIN_FILES = 1024  # fewer are copied in-process: forking would cost more than it saves
PASS_BATCH_FILES = 256  # a shard's finished files are journaled in batches of this many,
PASS_BATCH_SECONDS = 1.0  # or of what this long gave, whichever comes first


def copy_units(writer: Writer, units: list[Any], read: Read, workers: int,
               progress: Callable[[int], None]) -> Iterator[Batch]:
    """Write every unit, in order, spread over forked worker processes (several reads in flight,
    no GIL between them) or, for a writer whose units return much, threads; yields each unit's
    batch of finished files. Closing the iterator (an error, Ctrl-C) stops the workers after the
    file in hand."""
    stop = multiprocessing.Value("b", 0, lock=False)  # shared with the workers: set, they stop

    def run(unit: Any) -> Batch:
        return writer.write_unit(unit, read, lambda: bool(stop.value))

    parallel = workers > 1 and len(units) > 1
    if parallel and writer.unit_processes:
        parallel = sum(map(writer.unit_files, units)) >= PARALLEL_MIN_FILES and can_fork()
    if not parallel:
        results: Iterator[Batch] = map(run, units)
    elif writer.unit_processes:
        results = fork_map(run, units, workers, f"{writer.out}: a copy")
    else:
        results = _threaded(run, units, workers)
    try:
        for finished in results:
            yield finished
            progress(finished.bytes)
    except OSError as e:
        raise LtError(write_error(writer.out, e)) from None
    finally:
        stop.value = 1
        if parallel:
            results.close()  # waits for the units in flight, which see `stop`


def _threaded(run: Callable[[Any], Batch], units: list[Any], workers: int) -> Iterator[Batch]:
    """`run` over the units in a thread pool, results in order; closing it waits for the units
    in flight and drops the rest."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ltx-unit")
    try:
        yield from pool.map(run, units)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def stream_jobs(writer: Writer, f: BinaryIO, label: str, nested: bool, todo: list[Job], workers: int,
                progress: Callable[[int], None], size: Optional[int],
                on_cut: Callable[[str], None], names: Optional[Names] = None) -> Iterator[Batch]:
    """Copy `todo` in one sequential pass over the tar `f` (the stream strategy). A tar that
    ends early ends the copy after the files before the cut; `on_cut` hears why. `names`: the
    member names a job may have in a flat tar (`Source.names_in_tar`)."""
    def write(job: Job, data: bytes) -> tuple[str, Done]:
        return job.split, writer.write(job, data)

    try:
        for split, d in stream.stream_copy(f, label, nested, stream.wanted_by_member(todo, nested, names),
                                            write, workers, size):
            yield batch([(split, d)])
            progress(d.size)
    except stream.Cut as e:
        on_cut(str(e))
    except OSError as e:
        raise LtError(write_error(writer.out, e)) from None


def copy_shards(writer: Writer, reads: list[ShardRead], workers: int, progress: Callable[[int], None],
                on_cut: Callable[[str, str], None]) -> Iterator[Batch]:
    """Run every shard's read (front to back, `sources.ShardRead`), each in a forked process of
    its own, as many at once as there are cores (at most `workers`; a read is bound by its
    inflating or decoding). A read writes its files itself, through the writer's `write`, in
    threads that overlap hashing and writing with its reading; its finished files come back in
    batches as they are written, so an interrupted build keeps them. A shard that ends early
    (`on_cut(origin, why)`) keeps its files; the other shards' reads go on."""
    procs = max(1, min(workers, len(reads), os.cpu_count() or 1))
    threads = max(2, workers // procs)

    def write(job: Job, data: bytes) -> tuple[str, Done]:
        return job.split, writer.write(job, data)

    def run(p: ShardRead) -> Iterator[tuple[str, Any]]:
        finished: list[Any] = []
        last = time.monotonic()
        for item in p.run(write, threads):
            if isinstance(item, str):
                yield "cut", (p.origin, item)
                continue
            finished.append(item)
            if len(finished) >= PASS_BATCH_FILES or time.monotonic() - last > PASS_BATCH_SECONDS:
                yield "batch", batch(finished)
                finished, last = [], time.monotonic()
        if finished:
            yield "batch", batch(finished)

    results = fork_each(run, reads, procs, f"{writer.out}: a shard's copy") \
        if procs > 1 and can_fork() else (x for p in reads for x in run(p))
    try:
        for kind, value in results:
            if kind == "cut":
                on_cut(*value)
                continue
            yield value
            progress(value.bytes)
    except OSError as e:
        raise LtError(write_error(writer.out, e)) from None
    finally:
        results.close()
