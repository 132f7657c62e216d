"""Fault matrix, archive rows: truncated, corrupt, not-a-tar and hostile tars.

Each test checks the exit code, the one error line naming the cause, that no final path holds
partial data, and (where the row says so) that a re-run with the tar restored completes.
"""
from __future__ import annotations

import gzip
import io
import os
import random
import stat
import tarfile
from pathlib import Path

import pytest

from ltextract.archives import OFFICIAL_SIZES
from ltextract.out.journal import journal_path
from ltextract.tar.header import BLOCK, CHKSUM, SIZE
from fault_util import assert_no_partial, build, completes, fails, verifies
from lt_util import padding_of, reference_members, rewrite_class_tar

TRAIN = "ILSVRC2012_img_train.tar"
VAL = "ILSVRC2012_img_val.tar"


def outer_members(tar: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tar) as t:
        return [m for m in t if m.name.endswith(".tar")]


def with_checksum(block: bytearray) -> bytearray:
    block[CHKSUM] = b" " * 8
    block[CHKSUM] = b"%06o\x00 " % sum(block)
    return block


def before_cut(pristine, split: str, cut: int) -> int:
    """How many of a split's listed images lie wholly before byte `cut` of the train tar."""
    where = reference_members(pristine.train_tar, nested=True)
    count = 0
    for line in pristine.lists[split].read_text().splitlines():
        _, wnid, name = line.split()[0].split("/")
        offset, size = where[(f"{wnid}.tar", name)]
        count += offset + size <= cut
    return count


def listed_with_padding(pristine, split: str, group: str) -> tuple[str, int, int]:
    """A listed image in the middle of `group` ("" in the val tar) whose payload is followed by
    zero padding: its path in OUT, and the padding's [start, end) in its tar."""
    tar, nested = (pristine.train_tar, True) if group else (pristine.val_tar, False)
    where = reference_members(tar, nested)
    found = []
    for line in pristine.lists[split].read_text().splitlines():
        rel = line.split()[0]
        _, wnid, name = rel.split("/")
        offset, size = where[(group, name)] if (group, name) in where else (0, 0)
        if (not group or group == f"{wnid}.tar") and size % BLOCK:
            found.append((offset, f"{split}/{wnid}/{name}", size))
    offset, rel, size = sorted(found)[len(found) // 2]
    return rel, *padding_of(offset, size)


@pytest.mark.parametrize("strategy", ["seek", "stream"])
@pytest.mark.parametrize("where", ["inside a class tar", "inside an outer header",
                                   "inside a padding in a class tar"])
def test_truncated_train_tar(tmp_path, manual, pristine, out, env, want, where, strategy):
    """Both strategies report a cut the same way and keep the same files."""
    tar = manual / TRAIN
    how = ("--strategy", strategy)
    completes(manual, out, env, *how)  # files of an earlier run must survive a bad tar
    third = outer_members(tar)[2]
    padded = ""
    if where == "inside a class tar":
        cut, needles = third.offset_data + third.size // 2, [third.name, f"{third.offset:,}"]
    elif where == "inside an outer header":
        cut, needles = third.offset + 200, [f"header at offset {third.offset:,}"]
    else:  # the class tar runs short; its last image before the cut is whole, its padding not
        padded, start, end = listed_with_padding(pristine, "train", third.name)
        cut, needles = (start + end) // 2, [third.name, f"{third.offset:,}"]
    mtime = tar.stat().st_mtime_ns
    data = tar.read_bytes()
    tar.write_bytes(data[:cut])

    line = fails(build(manual, out, env, *how), str(tar), "truncated", *needles)
    assert f"ends at {cut:,}" in line and "before the cut are extracted" in line
    assert f"the official {TRAIN} is {OFFICIAL_SIZES[TRAIN]:,} bytes, this file {cut:,}" in line
    assert_no_partial(out, want)  # the files already there stay whole and usable
    verifies(out, env)
    fresh = tmp_path / "fresh"
    again = fails(build(manual, fresh, env, *how), "truncated", "before the cut are extracted")
    assert_no_partial(fresh, want)  # files before the cut: whole, byte-identical to the tar's
    extracted = {s: len([p for p in (fresh / s).rglob("*") if p.is_file()]) for s in ("train", "val")}
    assert extracted == {s: before_cut(pristine, s, cut) for s in ("train", "val")}
    assert extracted["train"] > 0
    assert not padded or (fresh / padded).read_bytes() == want[padded]
    listed = sum(len(pristine.lists[s].read_text().splitlines()) for s in ("train", "val"))
    assert f"the {sum(extracted.values()):,} of {listed:,} listed files" in again
    assert not (fresh / "train.csv").exists()  # the split is not done: no manifest claims it is
    assert (fresh / "test.csv").exists()  # the val tar is whole: its split is done all the same
    completes(manual, fresh, env, "--split", "test", *how)  # test comes from the val tar alone

    tar.write_bytes(data)  # restored: the re-run completes both outputs
    os.utime(tar, ns=(mtime, mtime))
    completes(manual, out, env, *how)
    verifies(out, env)
    completes(manual, fresh, env, *how)
    verifies(fresh, env)


@pytest.mark.parametrize("strategy", ["seek", "stream"])
def test_cut_inside_the_padding_after_a_class_tar(manual, pristine, out, env, want, strategy):
    """A class tar whose size leaves padding in the outer tar, and the file ends in it: every
    class tar up to that one is whole and extracted, and the end is reported as a cut."""
    tar = manual / TRAIN
    rewrite_class_tar(tar, tar, 2, lambda data: data[:-100])  # still ends in zero blocks
    whole = outer_members(tar)
    third = whole[2]
    assert third.size % BLOCK
    cut = sum(padding_of(third.offset_data, third.size)) // 2
    tar.write_bytes(tar.read_bytes()[:cut])
    fails(build(manual, out, env, "--strategy", strategy), str(tar), "truncated",
          f"the padding after {third.name} (header at offset {third.offset:,})",
          f"ends at {cut:,}", "incomplete download?")
    assert_no_partial(out, want)
    wnids = {m.name[:-4] for m in whole[:3]}
    listed = [line.split()[0] for line in pristine.lists["train"].read_text().splitlines()]
    got = [p for p in (out / "train").rglob("*") if p.is_file()]
    assert len(got) == sum(rel.split("/")[1] in wnids for rel in listed) > 0
    assert not (out / "train.csv").exists() and (out / "test.csv").exists()


@pytest.mark.parametrize("strategy", ["seek", "stream"])
@pytest.mark.parametrize("at", ["inside a member", "inside its padding"])
def test_truncated_val_tar(manual, pristine, out, env, want, at, strategy):
    """A cut inside a member of the flat val tar, or inside the zero padding after one (tar(1):
    "Unexpected EOF"): the test split keeps the files before it, the padded one included."""
    tar = manual / VAL
    where = reference_members(pristine.val_tar, nested=False)
    listed = [line.split()[0].rsplit("/", 1)[1] for line in pristine.lists["test"].read_text().splitlines()]
    if at == "inside a member":
        name = listed[len(listed) // 2]
        offset, size = where[("", name)]
        cut, subject = offset + size // 2, name
    else:
        rel, start, end = listed_with_padding(pristine, "test", "")
        name = rel.rsplit("/", 1)[1]
        offset, size = where[("", name)]
        cut, subject = (start + end) // 2, f"the padding after {name}"
    tar.write_bytes(tar.read_bytes()[:cut])
    line = fails(build(manual, out, env, "--strategy", strategy), str(tar), "truncated",
                 f"{subject} (header at offset {offset - BLOCK:,})", f"ends at {cut:,}",
                 f"the official {VAL} is {OFFICIAL_SIZES[VAL]:,} bytes, this file {cut:,}")
    kept = sum(where[("", n)][0] + where[("", n)][1] <= cut for n in listed)
    assert f"the {kept:,} of {len(listed):,} listed files" in line and kept > 0
    assert_no_partial(out, want)
    extracted = [p.name for p in (out / "test").rglob("*") if p.is_file()]
    assert len(extracted) == kept and (name in extracted) == (at == "inside its padding")
    journaled = journal_path(out, "test").read_text()
    assert all(f"/{n}\t" in journaled for n in extracted)  # a re-run keeps them
    assert not (out / "test.csv").exists() and (out / "train.csv").exists()


@pytest.mark.parametrize("strategy", ["seek", "stream"])
@pytest.mark.parametrize("which", [TRAIN, VAL])
def test_tar_cut_at_a_member_boundary(manual, pristine, out, env, want, which, strategy):
    """A download cut right after a member's padding reads as a whole, shorter tar (tar(1)
    accepts it): the missing images are reported with the official size, which says why."""
    tar = manual / which
    if which == TRAIN:  # right after the third class tar
        third = outer_members(tar)[2]
        cut = padding_of(third.offset_data, third.size)[1]
    else:  # right after a listed image's padding
        cut = listed_with_padding(pristine, "test", "")[2]
    tar.write_bytes(tar.read_bytes()[:cut])
    line = fails(build(manual, out, env, "--strategy", strategy), "image(s)", "missing from",
                 f"{which} (the official {which} is {OFFICIAL_SIZES[which]:,} bytes, this file"
                 f" {cut:,}: an incomplete download?): ")
    assert "truncated" not in line
    assert ("named by ImageNet_LT_" in line) == (strategy == "seek")  # stream: found after the pass
    assert_no_partial(out, want)


@pytest.mark.parametrize("strategy", ["seek", "stream"])
def test_class_tar_ending_inside_a_padding_is_corrupt(manual, out, env, want, strategy):
    """A class tar, whole inside a whole train tar, that ends in the padding after its last
    member: not a cut download but a corrupt archive; nothing in it is trusted."""
    tar = manual / TRAIN
    second = outer_members(tar)[1]
    with tarfile.open(fileobj=io.BytesIO(tar.read_bytes()[second.offset_data:
                                                           second.offset_data + second.size])) as t:
        last = [m for m in t if m.isreg()][-1]
    assert last.size % BLOCK
    start, end = padding_of(last.offset_data, last.size)
    rewrite_class_tar(tar, tar, 1, lambda data: data[:(start + end) // 2])
    fails(build(manual, out, env, "--strategy", strategy), str(tar), "corrupt", second.name,
          f"the padding after {second.name}: {last.name} (header at offset"
          f" {second.offset_data + last.offset:,}) runs to byte", "past the end of its tar")
    assert_no_partial(out, want)
    assert not list(out.glob("*.csv")) and not list(out.rglob("*.ltx-part"))


def test_corrupt_checksum_in_nested_tar(manual, out, env, want):
    tar = manual / TRAIN
    second = outer_members(tar)[1]
    with tarfile.open(fileobj=io.BytesIO(tar.read_bytes()[second.offset_data:
                                                           second.offset_data + second.size])) as t:
        inner = list(t)[2]
    at = second.offset_data + inner.offset
    data = bytearray(tar.read_bytes())
    data[at + 5] ^= 0x20  # one bit in the member name; the stored checksum no longer matches
    tar.write_bytes(bytes(data))
    fails(build(manual, out, env), str(tar), second.name, f"header at offset {at:,}", "checksum")
    assert_no_partial(out, want)


@pytest.mark.parametrize("content,needle", [
    (random.Random(1).randbytes(70_000), "is not a tar file"),
    (gzip.compress(b"hello" * 1000, mtime=0), "is a gzip file"),
    (b"", "is empty"),
    (b"<!DOCTYPE html><html><body>Quota exceeded</body></html>\n" * 20, "HTML"),
])
@pytest.mark.parametrize("which", [TRAIN, VAL])
def test_not_a_tar(manual, out, env, want, content, needle, which):
    (manual / which).write_bytes(content)
    fails(build(manual, out, env), str(manual / which), needle)
    assert_no_partial(out, want)


def test_hostile_members_never_leave_out(tmp_path, out, env):
    """Members named ../x and /etc/x, links, devices and FIFOs: skipped, never written anywhere;
    output paths come only from validated list lines."""
    manual = tmp_path / "manual"
    manual.mkdir()
    wnid = "n01440764"
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w", format=tarfile.GNU_FORMAT) as t:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(data), link
            t.addfile(info, io.BytesIO(data) if data else None)
        add(f"{wnid}_1.JPEG", data=b"good one")
        add(f"../{wnid}_2.JPEG", data=b"escape up")
        add(f"/tmp/{wnid}_3.JPEG", data=b"escape to an absolute path")
        add(f"{wnid}_4.JPEG", tarfile.SYMTYPE, link="/etc/passwd")
        add(f"{wnid}_5.JPEG", tarfile.LNKTYPE, link=f"{wnid}_1.JPEG")
        add(f"{wnid}_6.JPEG", tarfile.CHRTYPE)
        add(f"{wnid}_7.JPEG", tarfile.FIFOTYPE)
        add("../../../outside.JPEG", tarfile.SYMTYPE, link="/etc/passwd")
    with tarfile.open(manual / TRAIN, "w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo(f"{wnid}.tar")
        info.size = len(inner.getvalue())
        t.addfile(info, io.BytesIO(inner.getvalue()))
        link = tarfile.TarInfo("../n01443537.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        t.addfile(link)
    listed = manual / "ImageNet_LT_train.txt"
    listed.write_text("".join(f"train/{wnid}/{wnid}_{i}.JPEG 0\n" for i in range(1, 8)))
    before = set(tmp_path.rglob("*"))
    line = fails(build(manual, out, env, "--split", "train"), "6 image(s)", f"{wnid}_2.JPEG")
    assert "missing" in line

    listed.write_text(f"train/{wnid}/{wnid}_1.JPEG 0\n")
    completes(manual, out, env, "--split", "train")
    files = {p.relative_to(out).as_posix(): p for p in out.rglob("*")}
    assert (out / f"train/{wnid}/{wnid}_1.JPEG").read_bytes() == b"good one"
    assert all(stat.S_ISREG(p.lstat().st_mode) or stat.S_ISDIR(p.lstat().st_mode)
               for p in files.values())
    assert [r for r in files if r.startswith("train/")] == ["train/n01440764",
                                                             f"train/{wnid}/{wnid}_1.JPEG"]
    cache = Path(env["LTEXTRACT_CACHE_DIR"])
    new = {p for p in set(tmp_path.rglob("*")) - before
           if not {out, cache} & {p, *p.parents}}
    assert new == set()
    assert not Path(f"/tmp/{wnid}_3.JPEG").exists()


def _set_size(block: bytearray, size: int) -> bytearray:
    if size < 8 ** 11:
        block[SIZE] = b"%011o\x00" % size
    else:  # GNU base-256
        block[SIZE] = bytes([0x80]) + size.to_bytes(11, "big")
    return with_checksum(block)


@pytest.mark.parametrize("strategy", ["seek", "stream"])
@pytest.mark.parametrize("level", ["outer", "inner"])
@pytest.mark.parametrize("huge", [8 ** 11 - 1, 1 << 62])
def test_size_field_larger_than_archive(manual, out, env, want, level, huge, strategy):
    tar = manual / TRAIN
    data = bytearray(tar.read_bytes())
    second = outer_members(tar)[1]
    at = second.offset if level == "outer" else second.offset_data
    data[at:at + BLOCK] = _set_size(bytearray(data[at:at + BLOCK]), huge)
    tar.write_bytes(bytes(data))
    line = fails(build(manual, out, env, "--strategy", strategy), str(tar), f"header at offset {at:,}")
    if level == "outer" and huge < OFFICIAL_SIZES[TRAIN]:
        # the official tar is bigger than this member: a cut download explains it as well
        assert "truncated" in line and "incomplete download?" in line
    else:
        assert "corrupt" in line and "truncated" not in line
    assert_no_partial(out, want)
