"""The benchmark script runs end to end (tiny sets, one round), so it cannot silently rot."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"


@pytest.mark.skipif(not shutil.which("tar"), reason="the benchmark compares against GNU tar")
def test_quick_bench_prints_every_table(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH), "--quick", "--data", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for title in ("Index of the full-count train tar", "Build of train + val + test",
                  "Build of train + val + test, realistic-size set", "Cold cache, realistic-size set",
                  "Peak RSS of build at full count", "Checks: verify, a re-run with nothing to do",
                  "by format, full-count set", "by format, realistic-size set",
                  "TFDS's own builder against --format tfds", "Peak RSS of the tfds and hf builds"):
        assert title in r.stdout
    for row in ("index, fresh", "index, cached", "tarfile iteration", "ltextract build (seek)",
                "ltextract build (seek, no index yet)",
                "ltextract build (stream)", "GNU tar, full extraction",
                "GNU tar, exactly the needed files", "cat of the tars",
                "first build (seek, no index)", "rebuild (stream, index cached)",
                "ltextract verify OUT", "find + xargs -0 -P2 sha256sum", "ltextract build, nothing to do",
                "ltextract verify --sources --md5", "md5sum of the tars", "folders", "tfds (tfrecord)",
                "tfds (array_record)", "hf", "2", "4"):
        line = next(l for l in r.stdout.splitlines() if l.startswith(f"| {row} |"))
        assert re.search(r"\d+\.\d\d s", line), line
    assert not (tmp_path / "data" / "quick" / "work").exists()  # scratch is removed
    assert (tmp_path / "data" / "quick" / "full-count" / "needed.tar").is_file()  # sets are kept
