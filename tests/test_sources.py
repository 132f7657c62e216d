"""Every source shape builds the same OUT; link modes; detection and its errors."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltextract.errors import TarError
from ltextract.formats import links
from ltextract.sources import detect as sources
from ltextract.sources.tree import TreeSource
from ltextract.tar import readers as multipart
from ltextract.plan import Job
from ltextract.out.folders import Folders
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import LAYOUTS, error_line, explode, out_files, reference_members, run_cli


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("src") / "manual",
                           SynthSpec(classes=7, seed=8, prefix="wnid/", extras=True, payload=2000))


@pytest.fixture(scope="module")
def lists(syn):
    return syn.manual_dir


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


DRIVER = Path(__file__).parent / "faults" / "driver.py"


def build(manual, lists, out, env, *extra, copy="in-process"):
    """`copy="workers"`: through the fault driver's `parallel`, so even these few files are
    copied by forked worker processes, a few per task."""
    args = ("build", "--manual-dir", manual, "--splits-dir", lists, "--out", out, *extra)
    if copy == "in-process":
        return run_cli(*args, env=env)
    return subprocess.run([sys.executable, str(DRIVER), "parallel", "--", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


@pytest.fixture(scope="module")
def reference(syn, lists, tmp_path_factory):
    """OUT built from the two tars: what every other source must reproduce byte for byte."""
    tmp = tmp_path_factory.mktemp("ref")
    out = tmp / "out"
    r = build(syn.manual_dir, lists, out, {"LTEXTRACT_CACHE_DIR": str(tmp / "cache")})
    assert r.returncode == 0, r.stderr
    return out_files(out)


@pytest.mark.parametrize("copy", ["in-process", "workers"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_source_builds_the_same_out(layout, copy, syn, lists, reference, tmp_path, env):
    manual = explode(syn, tmp_path / "manual", layout)
    out = tmp_path / "out"
    r = build(manual, lists, out, env, copy=copy)
    assert r.returncode == 0, r.stderr
    kind = layout if layout in ("class-tars", "multipart") else "tree"
    said = {"class-tars": "folder of class tars", "multipart": "tar in 4 parts"}.get(kind, "folder of wnid folders")
    assert f"train from {manual}" in r.stderr and f"({said})" in r.stderr
    got = out_files(out)
    assert got.keys() == reference.keys()
    assert got == reference  # files, manifests and rewritten lists
    assert run_cli("verify", out, env=env).returncode == 0
    meta = json.loads((out / "ltextract.json").read_text())
    assert meta["splits"]["train"]["source"] == kind


def can_clone(folder) -> bool:
    """Whether this filesystem clones (btrfs, XFS) or ltextract must fall back (ext4, tmpfs)."""
    (folder / "a").write_bytes(b"x" * 4096)
    with open(folder / "a", "rb") as src, open(folder / "b", "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), links.FICLONE, src.fileno())
            return True
        except OSError:
            return False


@pytest.mark.parametrize("copy", ["in-process", "workers"])
@pytest.mark.parametrize("mode", ["hardlink", "symlink", "reflink"])
def test_link_modes(mode, copy, syn, lists, reference, tmp_path, env):
    manual = explode(syn, tmp_path / "manual", "tree")
    out = tmp_path / "out"
    r = build(manual, lists, out, env, "--link", mode, "--json", copy=copy)
    assert r.returncode == 0, r.stderr
    assert out_files(out) == reference
    for split, top in (("train", "train"), ("val", "train"), ("test", "val")):
        for p in sorted((out / split).rglob("*.JPEG")):
            src = manual / top / (p.parent.name if top == "train" else "") / p.name
            if mode == "hardlink":
                assert p.stat().st_ino == src.stat().st_ino and p.stat().st_nlink >= 2
            elif mode == "symlink":
                assert p.is_symlink() and os.readlink(p) == str(src.resolve())
            else:  # a clone or a copy, never the same inode
                assert not p.is_symlink() and p.stat().st_ino != src.stat().st_ino
    notices = [line for line in r.stderr.splitlines() if "reflink is not supported" in line]
    assert len(notices) == (0 if mode != "reflink" or can_clone(tmp_path) else 1)
    assert run_cli("verify", out, env=env).returncode == 0
    again = build(manual, lists, out, env, "--link", mode, "--json")
    assert again.returncode == 0, again.stderr
    copied = {s: v["copied"] for s, v in json.loads(again.stdout)["splits"].items()}
    if mode != "symlink":  # links are not regular files, so they are simply placed again
        assert copied == {"train": 0, "val": 0, "test": 0}


def test_symlinked_out_verifies_the_sources(syn, lists, tmp_path, env):
    manual = explode(syn, tmp_path / "manual", "tree")
    out = tmp_path / "out"
    assert build(manual, lists, out, env, "--link", "symlink").returncode == 0
    victim = sorted((manual / "val").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-1] + b"!")
    r = run_cli("verify", out, "--json", env=env)
    assert r.returncode == 1
    assert [p["path"].rsplit("/", 1)[1] for p in json.loads(r.stdout)["problems"]] == [victim.name]


def test_explicit_sources_need_no_manual_dir(syn, lists, reference, tmp_path, env):
    tree = explode(syn, tmp_path / "elsewhere", "kaggle") / "ILSVRC" / "Data" / "CLS-LOC"
    out = tmp_path / "out"
    r = run_cli("build", "--train-source", tree / "train", "--val-source", syn.val_tar,
                "--splits-dir", lists, "--out", out, env={**env, "LTEXTRACT_MANUAL_DIR": str(tmp_path / "no")})
    assert r.returncode == 0, r.stderr
    assert out_files(out) == reference


@pytest.mark.parametrize("layout", ["tree-val-wnid", "class-tars", "multipart"])
def test_webdataset_from_any_source_equals_webdataset_from_tars(layout, syn, lists, tmp_path, env):
    manual = explode(syn, tmp_path / "manual", layout)
    a, b = tmp_path / "a", tmp_path / "b"
    assert build(syn.manual_dir, lists, a, env, "--format", "webdataset", "--shard-size", "9files").returncode == 0
    assert build(manual, lists, b, env, "--format", "webdataset", "--shard-size", "9files").returncode == 0
    assert out_files(a) == out_files(b)


def test_missing_file_in_a_tree_is_named(syn, lists, tmp_path, env):
    manual = explode(syn, tmp_path / "manual", "tree")
    gone = sorted((manual / "val").iterdir())[3]
    gone.unlink()
    r = build(manual, lists, tmp_path / "out", env)
    assert r.returncode == 1
    line = error_line(r.stderr)
    assert gone.name in line and "missing from" in line and str(manual / "val") in line


def test_link_with_only_tars_is_refused(syn, lists, tmp_path, env):
    r = build(syn.manual_dir, lists, tmp_path / "out", env, "--link", "hardlink")
    assert r.returncode == 1 and "needs an extracted tree" in error_line(r.stderr)
    r = build(syn.manual_dir, lists, tmp_path / "out", env, "--link", "hardlink", "--format", "webdataset")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_detection(tmp_path):
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    assert sources.detect(tmp_path, "train") == TreeSource("train", tmp_path / "train")
    assert sources.detect(tmp_path, "val") == TreeSource("val", tmp_path / "val", flat=True)
    (tmp_path / "ILSVRC2012_img_val.tar").write_bytes(b"")
    assert sources.detect(tmp_path, "val").kind == "tar"  # the tar wins over a tree
    ct = tmp_path / "c"
    ct.mkdir()
    (ct / "n01440764.tar").write_bytes(b"")
    assert sources.describe_path(ct, "train").kind == "class-tars"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TarError, match="holds no wnid folders"):
        sources.describe_path(empty, "train")
    with pytest.raises(TarError, match="ILSVRC2012_img_train.tar not found"):
        sources.detect(empty, "train")


@given(st.lists(st.integers(0, 40), min_size=1, max_size=6), st.data())
@settings(max_examples=60, deadline=None)
def test_parts_reader_reads_like_the_whole(tmp_path_factory, sizes, data):
    folder = tmp_path_factory.mktemp("parts")
    whole = (bytes(range(256)) * (sum(sizes) // 256 + 1))[:sum(sizes)]
    pos = 0
    for i, n in enumerate(sizes):
        (folder / f"x.tar.{i + 1:03d}").write_bytes(whole[pos:pos + n])
        pos += n
    reader = multipart.PartsReader(folder / "x.tar.001")
    try:
        assert reader.size == len(whole)
        for _ in range(5):
            offset = data.draw(st.integers(0, len(whole) + 2))
            n = data.draw(st.integers(0, len(whole) + 2))
            assert reader.read(offset, n) == whole[offset:offset + n]
    finally:
        reader.close()


@pytest.mark.parametrize("shape", ["tar", "parts", "tree"])
def test_read_into_reads_what_read_returns(shape, tmp_path):
    """`read_into` (a shard writer's window, filled in place) gives `read`'s bytes, through
    `Reading` too, and a member cut short is named as `read` names it."""
    from ltextract.sources import FileEachReader, Reading
    from ltextract.sources.archive import ArchiveReader

    whole = bytes(range(256)) * 40
    if shape == "tree":
        (tmp_path / "img.jpg").write_bytes(whole[100:])
        reader, path, base = FileEachReader(), tmp_path / "img.jpg", 100
    else:
        path = tmp_path / ("x.tar" if shape == "tar" else "x.tar.001")
        path.write_bytes(whole[:5000] if shape == "parts" else whole)
        if shape == "parts":
            (tmp_path / "x.tar.002").write_bytes(whole[5000:])
        reader, base = ArchiveReader(path), 0
    try:
        for offset, size in ((4900, 300), (150, 1), (9000, 1000)):
            job = Job("train", f"train/n0/{offset}.jpg", "n0", 0, path, offset - base, size)
            buf = bytearray(size)
            reader.read_into(job, memoryview(buf))
            assert bytes(buf) == reader.read(job) == whole[offset:offset + size]
            into = bytearray(size)
            Reading({"train": reader}, {"train": "train"}).into(job, memoryview(into))
            assert into == buf
        cut = Job("train", "train/n0/cut.jpg", "n0", 0, path, len(whole) - base - 10, 20)
        with pytest.raises(TarError, match="is truncated: train/n0/cut.jpg"):
            reader.read_into(cut, memoryview(bytearray(20)))
    finally:
        reader.close()


def test_a_gap_in_the_parts_is_named(syn, lists, tmp_path, env):
    manual = explode(syn, tmp_path / "manual", "multipart")
    (manual / "ILSVRC2012_img_val.tar.002").unlink()
    r = build(manual, lists, tmp_path / "out", env, "--split", "test")
    assert r.returncode == 1
    line = error_line(r.stderr)
    assert "ILSVRC2012_img_val.tar.002 is missing" in line and ".003" in line


def test_split_tar_index_is_cached_with_offsets_into_the_whole(syn, lists, tmp_path, env):
    manual = explode(syn, tmp_path / "manual", "multipart")
    for _ in range(2):
        r = run_cli("index", "--manual-dir", manual, env=env)
        assert r.returncode == 0, r.stderr
    assert "cached" in r.stdout
    listed = run_cli("index", "--manual-dir", manual, "--list", env=env)
    assert listed.returncode == 0, listed.stderr
    reference = reference_members(syn.train_tar, True)
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    train = {(a.split("/", 1)[1], m): (int(o), int(n)) for a, m, o, n in lines
             if a.startswith("ILSVRC2012_img_train.tar.001/")}
    assert train == reference and train


def test_reflink_success_path_places_the_clone_without_notice(tmp_path, monkeypatch):
    """Where FICLONE works (btrfs, XFS; not this test's filesystem, maybe) no copy is made: the
    ioctl is stood in for by a byte copy so the success path runs everywhere."""
    src = tmp_path / "src.JPEG"
    src.write_bytes(b"\xff\xd8" + os.urandom(5000))
    (tmp_path / "out" / "val" / "n0").mkdir(parents=True)
    calls = []

    def fake_ioctl(fd, request, arg):
        assert request == links.FICLONE
        calls.append(fd)
        os.write(fd, os.pread(arg, 1 << 20, 0))

    monkeypatch.setattr(links.fcntl, "ioctl", fake_ioctl)
    notices: list[str] = []
    placer = links.Placer("reflink", notices.append)
    job = Job("val", "val/n0/src.JPEG", "n0", 0, src, 0, src.stat().st_size)
    folders = Folders(tmp_path / "out")
    done = placer(folders, job)
    folders.close()
    final = tmp_path / "out" / job.rel
    assert calls and notices == [] and final.read_bytes() == src.read_bytes()
    assert done.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert done.mtime_ns == final.stat().st_mtime_ns
    assert [p.name for p in final.parent.iterdir()] == ["src.JPEG"]


def test_hardlink_through_a_tree_of_symlinks_links_the_file(syn, lists, tmp_path, env):
    real = explode(syn, tmp_path / "real", "tree")
    manual = tmp_path / "manual"
    for p in sorted(real.rglob("*")):
        dest = manual / p.relative_to(real)
        if p.is_dir():
            dest.mkdir(parents=True)
        else:
            dest.symlink_to(p)
    out = tmp_path / "out"
    assert build(manual, lists, out, env, "--link", "hardlink", "--split", "test").returncode == 0
    for p in (out / "test").rglob("*.JPEG"):
        assert not p.is_symlink() and p.stat().st_ino == (real / "val" / p.name).stat().st_ino
    assert run_cli("verify", out, env=env).returncode == 0
