"""Helpers for the fault matrix: run builds (plain or with a fault injected), and check what a
failure leaves behind: no partial data at a final path, no temporary files, one error line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ltextract.synth import SynthResult
from lt_util import error_line, reference_members, run_cli

DRIVER = Path(__file__).with_name("driver.py")
SPLITS = ("train", "val", "test")


def copy_manual(pristine: SynthResult, dest: Path) -> Path:
    shutil.copytree(pristine.manual_dir, dest)
    return dest


def build_args(manual: Path, out: Path, *extra: object) -> tuple:
    return ("build", "--manual-dir", manual, "--splits-dir", manual, "--out", out, "-q", *extra)


def build(manual: Path, out: Path, env: dict, *extra: object, **kw) -> subprocess.CompletedProcess:
    return run_cli(*build_args(manual, out, *extra), env=env, **kw)


def driver_cmd(spec: str, *args: object) -> list[str]:
    return [sys.executable, str(DRIVER), spec, "--", *map(str, args)]


def run_faulty(spec: str, manual: Path, out: Path, env: dict, *extra: object,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """A build with the fault `spec` injected (see driver.py)."""
    return subprocess.run(driver_cmd(spec, *build_args(manual, out, *extra)), capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=timeout)


def fails(r: subprocess.CompletedProcess, *needles: str, code: int = 1) -> str:
    """Exit `code` and exactly one `ltextract: error:` line containing every needle."""
    assert r.returncode == code, (r.returncode, r.stderr)
    line = error_line(r.stderr)
    for needle in needles:
        assert needle in line, line
    return line


def expected_bytes(manual: Path) -> dict[str, bytes]:
    """OUT-relative path -> the bytes that path must hold, read with tarfile as the reference."""
    raw = {t: (manual / f"ILSVRC2012_img_{t}.tar").read_bytes() for t in ("train", "val")}
    refs = {"train": reference_members(manual / "ILSVRC2012_img_train.tar", True),
            "val": reference_members(manual / "ILSVRC2012_img_val.tar", False)}
    want = {}
    for split, top in (("train", "train"), ("val", "train"), ("test", "val")):
        for line in (manual / f"ImageNet_LT_{split}.txt").read_text().splitlines():
            _, wnid, name = line.split()[0].split("/")
            off, size = refs[top][(f"{wnid}.tar", name) if top == "train" else ("", name)]
            want[f"{split}/{wnid}/{name}"] = raw[top][off:off + size]
    return want


def assert_no_partial(out: Path, want: dict[str, bytes]) -> None:
    """Every final path in OUT's split folders holds exactly its member's bytes, or is absent."""
    for split in SPLITS:
        for p in (out / split).rglob("*") if (out / split).is_dir() else ():
            if p.is_file() and not p.name.startswith("."):
                rel = p.relative_to(out).as_posix()
                assert rel in want, f"unexpected file {rel}"
                assert p.read_bytes() == want[rel], f"{rel} holds partial or wrong data"


def temporaries(*roots: Path) -> list[Path]:
    """Temporary files ltextract writes on the way to a final name."""
    found = []
    for root in roots:
        if root.exists():
            found += [p for p in root.rglob("*") if p.name.endswith((".ltx-part", ".tmp"))
                      or p.name.startswith("probe.")]
    return found


def live(out: Path, split: str = "train") -> Path:
    """Where a running build writes `split`: its staging folder until it is published."""
    staging = out / f".{split}.ltx-part"
    return staging if staging.is_dir() else out / split


def verifies(out: Path, env: dict) -> None:
    r = run_cli("verify", out, env=env)
    assert r.returncode == 0, r.stderr


def completes(manual: Path, out: Path, env: dict, *extra: object, **kw) -> dict:
    """A (re-)run finishes, `verify` passes and nothing temporary is left; the --json summary.
    `kw` goes to subprocess.run (e.g. stdin)."""
    r = build(manual, out, env, "--json", *extra, **kw)
    assert r.returncode == 0, r.stderr
    verifies(out, env)
    assert temporaries(out, Path(env["LTEXTRACT_CACHE_DIR"])) == []
    return json.loads(r.stdout)
