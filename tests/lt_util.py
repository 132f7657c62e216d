"""Shared helpers for the tests: run the CLI as users do, read tars with the stdlib as a reference."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from ltextract.tarindex import normalise


def run_cli(*args: object, env: dict | None = None, timeout: float = 120,
            **kw) -> subprocess.CompletedProcess:
    """`python -m ltextract ARGS` in a child process, so exit codes and stderr are real."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ltextract", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, **kw)


def reference_members(tar: Path, nested: bool) -> dict[tuple[str, str], tuple[int, int]]:
    """(group, normalised name) -> (absolute offset, size) of every regular member, via tarfile."""
    found = {}
    with tarfile.open(tar) as outer:
        for m in outer:
            if not m.isreg():
                continue
            if not nested:
                found[("", normalise(m.name))] = (m.offset_data, m.size)
                continue
            name = normalise(m.name)
            if not name.endswith(".tar") or "/" in name:
                continue
            with tarfile.open(fileobj=outer.extractfile(m)) as inner:
                for im in inner:
                    if im.isreg():
                        found[(name, normalise(im.name, name[:-4]))] = (m.offset_data + im.offset_data,
                                                                         im.size)
    return found


def error_line(stderr: str) -> str:
    """The single error line a failure must print; fails the test on tracebacks."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("ltextract: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def tar_bytes(syn) -> dict[str, bytes]:
    """Expected output bytes per OUT-relative path, read with tarfile as a reference."""
    raw = {"train": syn.train_tar.read_bytes(), "val": syn.val_tar.read_bytes()}
    refs = {"train": reference_members(syn.train_tar, True), "val": reference_members(syn.val_tar, False)}
    expected = {}
    for split, top in (("train", "train"), ("val", "train"), ("test", "val")):
        for line in syn.lists[split].read_text().splitlines():
            path, _ = line.split()
            _, wnid, name = path.split("/")
            key = (f"{wnid}.tar", name) if top == "train" else ("", name)
            off, size = refs[top][key]
            expected[f"{split}/{wnid}/{name}"] = raw[top][off:off + size]
    return expected
