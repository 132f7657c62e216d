"""The index scan in forked worker processes (workers.py): the same outcome as in-process, and failures of
the workers themselves reported as one clear error."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ltextract.tar import readers as multipart
from ltextract.tar import index as tarindex
from ltextract import workers as workers_module
from ltextract.errors import LtError, TarError
from ltextract.synth import SynthSpec, make_manual_dir
from ltextract.tar.header import BLOCK, CHKSUM


def _whole_outcome(path: Path):
    """Everything a scan returns, or its error message."""
    try:
        index = tarindex.scan(path, True)
    except TarError as e:
        return str(e)
    return (index.groups, index.names, index.offsets.tolist(), index.sizes.tolist(), index.cut)


def test_parallel_scan_uses_workers_and_equals_serial(tmp_path, monkeypatch):
    """Intact, cut at many points, and corrupt: forked workers give exactly the serial outcome."""
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=12, long_names=True))
    clean = syn.train_tar.read_bytes()
    index = tarindex.scan(syn.train_tar, True)
    g5, g7 = index.groups[5], index.groups[7]
    bad = tmp_path / "ILSVRC2012_img_train.tar"
    cases = {"intact": clean}
    for cut in (g5.offset + 700, g5.offset - 100, g7.offset + g7.size - 1, len(clean) // 3):
        cases[f"cut at {cut}"] = clean[:cut]
    flipped = bytearray(clean)
    flipped[g7.offset + CHKSUM.start] ^= 0x01  # first header of the eighth class tar
    cases["bad checksum"] = bytes(flipped)
    lying = bytearray(clean)  # the fifth class tar's first member claims more than its tar holds
    lying[g5.offset + 124:g5.offset + 136] = b"%011o\x00" % (g5.size * 2)
    lying[g5.offset + 148:g5.offset + 156] = b" " * 8
    lying[g5.offset + 148:g5.offset + 156] = b"%06o\x00 " % sum(lying[g5.offset:g5.offset + BLOCK])
    cases["size lie"] = bytes(lying)
    pids = tmp_path / "pids"
    real = tarindex._scan_span

    def spy(*args):
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args)
    monkeypatch.setattr(tarindex, "_scan_span", spy)
    for case, data in cases.items():
        bad.write_bytes(data)
        monkeypatch.setattr(tarindex, "PARALLEL_MIN_SPANS", 1 << 30)
        serial = _whole_outcome(bad)
        monkeypatch.setattr(tarindex, "PARALLEL_MIN_SPANS", 1)
        pids.unlink(missing_ok=True)
        assert _whole_outcome(bad) == serial, case
        scanned_in = pids.read_text().split()  # which process scanned each class tar
        assert scanned_in and str(os.getpid()) not in scanned_in, case
    assert isinstance(serial, str) and "corrupt" in serial  # the last case: the size lie


def _exit_in_worker(*args):
    os._exit(3)


def test_a_dead_scan_worker_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tarindex, "PARALLEL_MIN_SPANS", 1)
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=4))
    parent = os.getpid()
    real = tarindex._scan_span
    monkeypatch.setattr(tarindex, "_scan_span",
                        lambda *a: real(*a) if os.getpid() == parent else _exit_in_worker())
    with pytest.raises(LtError, match="header-scan worker process died") as e:
        tarindex.scan(syn.train_tar, True)
    assert "\n" not in str(e.value)


def test_a_dead_worker_is_one_clear_error():
    """The OOM killer taking a worker (here: it exits) ends the whole map with an LtError."""
    def task(i: int) -> int:
        if i == 3:
            os._exit(1)
        return i

    with pytest.raises(LtError, match="^a test worker process died"):
        list(workers_module.fork_map(task, list(range(8)), 2, "a test"))
    assert list(workers_module.fork_map(lambda i: i * i, [1, 2, 3], 2, "a test")) == [1, 4, 9]


def test_workers_per_core_only_for_a_tar_in_the_page_cache(tmp_path, monkeypatch):
    """A warm tar is parsed by one worker per core (more only take turns); an evicted one by
    SCAN_WORKERS, which keep that many reads in flight. The probe's answer is injected: what
    the page cache holds depends on everything else the machine does."""
    monkeypatch.setattr(tarindex, "PARALLEL_MIN_SPANS", 1)
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=20))
    spans = len(tarindex.scan(syn.train_tar, True).groups)
    workers = []
    real = workers_module.fork_map

    def counted(task, items, n, what):
        workers.append(n)
        return real(task, items, n, what)
    monkeypatch.setattr(tarindex, "fork_map", counted)
    scans = {}
    for cached in (False, True):
        monkeypatch.setattr(tarindex, "_in_page_cache", lambda reader, spans, c=cached: c)
        scans[cached] = tarindex.scan(syn.train_tar, True)
    many = min(tarindex.SCAN_WORKERS, spans)
    assert workers == [many, min(many, max(2, os.cpu_count() or 1))]
    cold, warm = scans[False], scans[True]
    assert (cold.names, cold.offsets, cold.sizes) == (warm.names, warm.offsets, warm.sizes)


class _Probed:
    """A mapped reader whose one-byte RWF_NOWAIT reads answer as told: `cold` offsets fail with
    EAGAIN (the page is not in memory), others read one byte."""

    def __init__(self, cold: set[int]):
        self.cold, self.asked = cold, []

    def preadv(self, fd, buffers, offset, flags):
        assert flags == os.RWF_NOWAIT and fd == "fd"
        self.asked.append(offset)
        if offset in self.cold:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return 1


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="the probe needs preadv2(RWF_NOWAIT)")
def test_page_cache_probe_reads_the_middle_of_spread_class_tars(monkeypatch):
    """The probe's own logic, with the kernel's answers injected: cached only if every probed
    page answers without waiting; a split tar (no single file) never counts as cached."""
    spans = [(f"n{i:08d}.tar", 1000 * i, 1000 * i + 800) for i in range(100)]
    reader = object.__new__(multipart.MappedReader)
    reader.fd = "fd"
    every = max(1, len(spans) // tarindex.CACHE_PROBES)
    middles = [(s + e) // 2 for _, s, e in spans[::every]]
    probe = _Probed(set())
    monkeypatch.setattr(tarindex.os, "preadv", probe.preadv)
    assert tarindex._in_page_cache(reader, spans)
    assert probe.asked == middles and len(middles) >= tarindex.CACHE_PROBES
    for cold in (middles[0], middles[len(middles) // 2], middles[-1]):
        probe = _Probed({cold})
        monkeypatch.setattr(tarindex.os, "preadv", probe.preadv)
        assert not tarindex._in_page_cache(reader, spans)
        assert probe.asked[-1] == cold  # stops at the first page that is not in memory
    parts = object.__new__(multipart.PartsReader)
    assert not tarindex._in_page_cache(parts, spans)
