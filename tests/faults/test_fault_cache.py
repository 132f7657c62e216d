"""Fault matrix, index-cache row: a stale index (the tar replaced by another of the same size)
or a corrupt index file is detected and rebuilt, never trusted."""
from __future__ import annotations

import io
import os
import zipfile

import pytest

from ltextract.tar.header import BLOCK, CHKSUM
from fault_util import assert_no_partial, build, completes, fails
from lt_util import run_cli

VAL = "ILSVRC2012_img_val.tar"


def index_state(manual, env) -> str:
    """'cached' or 'scanned', as `ltextract index` reports the val tar."""
    r = run_cli("index", "--manual-dir", manual, env=env)
    assert r.returncode == 0, r.stderr
    return next(line for line in r.stdout.splitlines() if line.startswith(VAL)).split("\t")[4]


def rewrite_keeping_size_and_mtime(path, edit) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def rename_first_member(data: bytearray) -> None:
    """Another tar of the same size: its first member has a different name."""
    name = bytes(data[:100]).split(b"\0")[0]
    assert name.endswith(b".JPEG")
    data[len(name) - 1] = ord("X")
    data[CHKSUM] = b" " * 8
    data[CHKSUM] = b"%06o\x00 " % sum(data[:BLOCK])


@pytest.mark.parametrize("change", ["new mtime", "same mtime, first block", "same mtime, last block"])
def test_stale_index_is_rebuilt(manual, out, env, want, change):
    completes(manual, out, env, "--split", "test")
    assert index_state(manual, env) == "cached"
    tar = manual / VAL
    if change == "new mtime":
        data = bytearray(tar.read_bytes())
        rename_first_member(data)
        tar.write_bytes(bytes(data))
    elif change == "same mtime, first block":
        rewrite_keeping_size_and_mtime(tar, rename_first_member)
    else:  # the end-of-archive padding differs: only the fingerprint of the last 4 KiB sees it
        rewrite_keeping_size_and_mtime(tar, lambda d: d.__setitem__(len(d) - 1, 1))
        assert index_state(manual, env) == "scanned"
        return
    first = bytes(tar.read_bytes()[:100]).split(b"\0")[0].decode()[:-1] + "G"
    # a stale index would still locate the old name and copy bytes from the new tar
    fails(build(manual, out, env, "--split", "test"), "missing from", "ILSVRC2012_img_val.tar", first)
    assert_no_partial(out, want)


CORRUPTIONS = {
    "garbage": lambda blob: b"\x00garbage" * 100,
    "empty": lambda blob: b"",
    "truncated zip": lambda blob: blob[: len(blob) // 2],
    "arrays disagree": lambda blob: _replace_member(blob, "size.npy", lambda b: b[:-8]),
    "wrong meta": lambda blob: _replace_member(blob, "meta.json", lambda b: b"[1, 2"),
}


def _replace_member(blob: bytes, name: str, edit) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(blob))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            dst.writestr(item, edit(data) if item == name else data)
    return buf.getvalue()


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupt_index_file_is_rebuilt(manual, out, env, want, how, tmp_path):
    completes(manual, out, env, "--split", "test")
    (index,) = [p for p in (tmp_path / "cache").rglob("*.ltidx") if p.name.startswith(VAL)]
    index.write_bytes(CORRUPTIONS[how](index.read_bytes()))
    assert index_state(manual, env) == "scanned"  # not trusted ...
    assert index_state(manual, env) == "cached"  # ... and replaced by a good one
    index.write_bytes(CORRUPTIONS[how](index.read_bytes()))
    summary = completes(manual, out, env, "--split", "test")
    assert summary["splits"]["test"]["copied"] == 0
    assert_no_partial(out, want)
