from __future__ import annotations

import gzip
import json
import os
import random
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from ltextract.tar import indexfile
from ltextract.tar import index as tarindex
from ltextract.tar import walk as tarwalk
from ltextract.archives import OFFICIAL_SIZES
from ltextract.errors import TarError
from ltextract.tar.truncation import official_size_hint
from ltextract.synth import SynthSpec, make_manual_dir
from ltextract.tar.header import BLOCK, CHKSUM
from lt_util import padding_of, reference_members, rewrite_class_tar


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def scan_mode(request, monkeypatch):
    """Every test here runs twice: class tars scanned in-process, and in forked workers."""
    monkeypatch.setattr(tarindex, "PARALLEL_MIN_SPANS", 1 if request.param == "parallel" else 1 << 30)
    return request.param


def indexed(index: tarindex.ArchiveIndex) -> dict[tuple[str, str], tuple[int, int]]:
    return {(g.name, m.name): (m.offset, m.size) for g, ms in index.iter_groups() for m in ms}


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
@pytest.mark.parametrize("prefix", ["", "./", "wnid/"])
def test_index_matches_tarfile(tmp_path, fmt, prefix):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=4, fmt=fmt, prefix=prefix,
                                                    long_names=True, extras=True))
    for tar, nested in ((syn.train_tar, True), (syn.val_tar, False)):
        index = tarindex.scan(tar, nested)
        assert indexed(index) == reference_members(tar, nested)
    data = syn.train_tar.read_bytes()
    index = tarindex.scan(syn.train_tar, True)
    for group, members in index.iter_groups():
        for m in members:
            assert m.offset % BLOCK == 0 and m.offset + m.size <= len(data)
    assert index.members == sum(g.count for g in index.groups)


def test_long_name_records_are_applied(tmp_path):
    for fmt in ("gnu", "pax"):
        syn = make_manual_dir(tmp_path / fmt, SynthSpec(classes=2, fmt=fmt, long_names=True))
        raw = syn.train_tar.read_bytes()
        marker = b"L" if fmt == "gnu" else b"x"
        assert any(raw[i + 156:i + 157] == marker for i in range(0, len(raw), BLOCK))
        names = {m.name for _, ms in tarindex.scan(syn.train_tar, True).iter_groups() for m in ms}
        listed = {line.split()[0].split("/")[-1] for line in syn.lists["train"].read_text().splitlines()}
        assert listed <= names


def test_skips_links_dirs_and_special(tmp_path):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=2, extras=True))
    index = tarindex.scan(syn.train_tar, True)
    ref = reference_members(syn.train_tar, True)
    assert set(indexed(index)) == set(ref)  # tarfile's isreg() excludes links, dirs, FIFOs


def test_cache_roundtrip_and_invalidation(tmp_path):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    first = indexfile.load_or_scan(syn.train_tar, True)
    assert not first.from_cache
    second = indexfile.load_or_scan(syn.train_tar, True)
    assert second.from_cache and indexed(second) == indexed(first)
    # same size and mtime, different content: the fingerprint catches it
    st = syn.train_tar.stat()
    data = bytearray(syn.train_tar.read_bytes())
    data[-1] ^= 0xFF
    syn.train_tar.write_bytes(bytes(data))
    os.utime(syn.train_tar, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not indexfile.load_or_scan(syn.train_tar, True).from_cache
    # a damaged cache file is rebuilt, not trusted
    indexfile.index_path(syn.train_tar).write_bytes(b"PK\x03\x04 garbage")
    again = indexfile.load_or_scan(syn.train_tar, True)
    assert not again.from_cache and indexed(again) == indexed(first)
    # touching the tar invalidates too
    os.utime(syn.train_tar, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not indexfile.load_or_scan(syn.train_tar, True).from_cache


@pytest.mark.parametrize("writer", ["pieces deflated apart", "one piece", "zipfile (zip64)"])
def test_index_file_is_a_plain_zip(tmp_path, monkeypatch, writer):
    """Whichever way it is written, the .ltidx is a zip any reader checks and reads (CRCs
    included): the names one per line, and the arrays as .npy uint64 little-endian."""
    if writer == "pieces deflated apart":
        monkeypatch.setattr(indexfile, "PIECE", 1000)  # many pieces per member, joined
    elif writer == "zipfile (zip64)":
        monkeypatch.setattr(indexfile, "ZIP32_MAX", 1000)  # as if the index were past 2 GiB
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    index = indexfile.load_or_scan(syn.train_tar, True)
    with zipfile.ZipFile(indexfile.index_path(syn.train_tar)) as z:
        assert z.testzip() is None
        assert z.namelist() == ["meta.json", "names.txt", "offset.npy", "size.npy"]
        assert json.loads(z.read("meta.json"))["groups"] == [list(vars(g).values()) for g in index.groups]
        assert z.read("names.txt") == index.names and index.members > 30
        for member, values in (("offset.npy", index.offsets), ("size.npy", index.sizes)):
            blob = z.read(member)
            start = 10 + int.from_bytes(blob[8:10], "little")
            assert blob[:6] == b"\x93NUMPY" and b"'<u8'" in blob[10:start] and start % 64 == 0
            assert list(struct.unpack(f"<{len(values)}Q", blob[start:])) == values.tolist()
        for info in z.infolist():  # each a complete deflate stream, as strict readers want it
            z.fp.seek(info.header_offset + 26)
            skip = sum(struct.unpack("<HH", z.fp.read(4)))
            inflater = zlib.decompressobj(-15)
            z.fp.seek(skip, os.SEEK_CUR)
            assert inflater.decompress(z.fp.read(info.compress_size)) == z.read(info)
            assert inflater.eof and not inflater.unused_data and info.compress_type == zipfile.ZIP_DEFLATED
    again = indexfile.load_or_scan(syn.train_tar, True)
    assert again.from_cache and indexed(again) == indexed(index)


def test_cache_lives_in_cache_dir_not_beside_tar(tmp_path):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=2))
    before = set(os.listdir(syn.manual_dir))
    indexfile.load_or_scan(syn.val_tar, False)
    assert set(os.listdir(syn.manual_dir)) == before
    assert indexfile.index_path(syn.val_tar).is_relative_to(tmp_path / "cache")


def truncated_copy(src: Path, dest: Path, size: int) -> Path:
    with open(src, "rb") as f, open(dest, "wb") as g:
        g.write(f.read(size))
    return dest


def test_truncated_train_tar_names_member_and_offset(tmp_path):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    index = tarindex.scan(syn.train_tar, True)
    cut_inside_class = index.groups[1].offset + 700  # inside the second class tar
    cut_in_outer_header = index.groups[2].offset - BLOCK + 100  # inside the third class tar's header
    whole = indexed(index)
    for cut in (cut_inside_class, cut_in_outer_header):
        bad = truncated_copy(syn.train_tar, tmp_path / "ILSVRC2012_img_train.tar", cut)
        partial = tarindex.scan(bad, True)
        assert "truncated" in partial.cut and "offset" in partial.cut and "official" in partial.cut
        # exactly the members whose bytes lie wholly before the cut, where the whole tar has them
        assert indexed(partial) == {k: v for k, v in whole.items() if v[0] + v[1] <= cut}
        with pytest.raises(TarError, match="truncated"):  # unless a caller accepts a partial index
            indexfile.load_or_scan(bad, True)
        assert not indexfile.index_path(bad).exists()  # never cached


def padded_member(members: dict, nested_in: str = "") -> tuple[tuple[str, str], int, int]:
    """A member in the middle (of group `nested_in`) followed by some zero padding, and its padding."""
    keys = sorted((k for k, (_, size) in members.items() if k[0] == nested_in and size % BLOCK),
                  key=lambda k: members[k])
    key = keys[len(keys) // 2]
    return (key, *padding_of(*members[key]))


@pytest.mark.parametrize("which", ["val tar", "train tar: inside a class tar",
                                   "train tar: after a class tar"])
def test_cut_inside_a_padding(tmp_path, which):
    """A file ending in the zero padding after a whole payload is cut (tar(1): "Unexpected EOF"),
    not a clean end; every member up to the one whose padding is cut is indexed."""
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    nested = which != "val tar"
    tar = syn.val_tar if not nested else syn.train_tar
    if which.endswith("after a class tar"):  # the class tar's size leaves padding in the outer tar
        (tmp_path / "trimmed").mkdir()
        tar = rewrite_class_tar(syn.train_tar, tmp_path / "trimmed" / tar.name, 1, lambda data: data[:-100])
    whole = indexed(tarindex.scan(tar, nested))
    if not nested:
        key, start, end = padded_member(whole)
    elif which.endswith("inside a class tar"):
        key, start, end = padded_member(whole, tarindex.scan(tar, True).groups[1].name)
    else:
        second = tarindex.scan(tar, True).groups[1]
        key, start, end = None, *padding_of(second.offset, second.size)
    assert end - start > 1
    cut = (start + end) // 2
    partial = tarindex.scan(truncated_copy(tar, tmp_path / tar.name, cut), nested)
    assert "is truncated: " in partial.cut and f"the file ends at {cut:,}" in partial.cut
    assert "official" in partial.cut
    if key is None or not nested:  # else the cut class tar's own payload is what runs short
        assert "the padding after " in partial.cut
    got = indexed(partial)
    assert got == {k: v for k, v in whole.items() if v[0] + v[1] <= cut} and partial.members == len(got)
    assert key is None or key in got  # its data is whole


def test_class_tar_whose_last_padding_runs_past_its_end_is_corrupt(tmp_path):
    """Inside a whole train tar, a class tar that ends in its last member's padding is not an
    incomplete download: it is corrupt, and the scan trusts nothing in the archive."""
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    members = reference_members(syn.train_tar, nested=True)
    group = tarindex.scan(syn.train_tar, True).groups[1]
    last = max((k for k in members if k[0] == group.name), key=lambda k: members[k])
    start, end = padding_of(*members[last])
    assert end - start > 1
    bad = rewrite_class_tar(syn.train_tar, tmp_path / "ILSVRC2012_img_train.tar", 1,
                            lambda data: data[:(start + end) // 2 - group.offset])
    with pytest.raises(TarError) as e:
        tarindex.scan(bad, True)
    msg = str(e.value)
    assert "is corrupt: the padding after " in msg and "past the end of its tar" in msg, msg
    assert last[1] in msg and "truncated" not in msg


def test_cut_exactly_at_a_member_boundary_is_a_shorter_tar(tmp_path):
    """No end-of-archive blocks, the file ends right after a padding: tar(1) accepts it, so does
    the scan; only the list can tell (see the "missing" messages)."""
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    whole = indexed(tarindex.scan(syn.val_tar, False))
    _, _, cut = padded_member(whole)
    bad = truncated_copy(syn.val_tar, tmp_path / "ILSVRC2012_img_val.tar", cut)
    index = tarindex.scan(bad, False)
    assert index.cut == ""
    assert indexed(index) == {k: v for k, v in whole.items() if v[0] + v[1] <= cut} != whole


def test_official_size_hint():
    assert official_size_hint("ILSVRC2012_img_val.tar", 8_192) == (
        " (the official ILSVRC2012_img_val.tar is 6,744,924,160 bytes, this file 8,192:"
        " an incomplete download?)")
    assert official_size_hint("ILSVRC2012_img_train.tar", OFFICIAL_SIZES["ILSVRC2012_img_train.tar"]) == ""
    assert official_size_hint("my_val.tar", 8_192) == ""


def test_corrupt_nested_header_checksum(tmp_path):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    index = tarindex.scan(syn.train_tar, True)
    group = index.groups[1]
    data = bytearray(syn.train_tar.read_bytes())
    data[group.offset + CHKSUM.start] ^= 0x01  # first header of the second class tar
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(TarError) as e:
        tarindex.scan(bad, True)
    msg = str(e.value)
    assert group.name in msg and f"offset {group.offset:,}" in msg and "checksum" in msg


@pytest.mark.parametrize("content,expect", [
    (b"", "empty"),
    (random.Random(0).randbytes(4096), "not a tar"),
    (gzip.compress(b"x" * 2000, mtime=0), "gzip"),
    (b"<!DOCTYPE html><html>quota exceeded</html>" * 20, "HTML"),
])
def test_not_a_tar(tmp_path, content, expect):
    path = tmp_path / "ILSVRC2012_img_val.tar"
    path.write_bytes(content)
    with pytest.raises(TarError, match=expect):
        tarindex.scan(path, False)


def test_size_field_larger_than_archive(tmp_path):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=2))
    data = bytearray(syn.val_tar.read_bytes())
    # rewrite the first member's size as 8 GiB and fix the checksum
    data[124:136] = b"%011o\x00" % (8 << 30)
    data[148:156] = b" " * 8
    data[148:156] = b"%06o\x00 " % sum(data[:BLOCK])
    bad = tmp_path / "ILSVRC2012_img_val.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(TarError, match="corrupt: .* claims 8,589,934,592 bytes, more than the whole"):
        tarindex.scan(bad, False)  # 8 GiB: more than even the complete official val tar


def test_flat_tar_of_empty_archive(tmp_path):
    path = tmp_path / "empty.tar"
    path.write_bytes(bytes(10240))
    with pytest.raises(TarError, match="no members"):
        tarindex.scan(path, False)


def test_plain_members_take_the_fast_path(tmp_path, monkeypatch):
    """The inlined path handles ordinary GNU/ustar members; parse_header sees only the odd ones."""
    calls = []
    real = tarwalk.parse_header
    monkeypatch.setattr(tarwalk, "parse_header", lambda block: calls.append(1) or real(block))
    for fmt in ("gnu", "ustar"):
        syn = make_manual_dir(tmp_path / fmt, SynthSpec(classes=5, fmt=fmt))
        calls.clear()
        index = tarindex.scan(syn.train_tar, True)
        assert index.members > 100 and len(calls) == 1  # scan() checks the first header itself


def _slow_only(monkeypatch) -> None:
    """No header matches the fast path's magic test, so every header goes through parse_header."""
    monkeypatch.setattr(tarwalk, "GNU_MAGIC", b"\xff" * 6)
    monkeypatch.setattr(tarwalk, "USTAR_MAGIC", b"\xff" * 6)


def _outcome(path: Path, nested: bool):
    try:
        return indexed(tarindex.scan(path, nested))
    except TarError as e:
        return str(e)


@pytest.mark.parametrize("fmt", ["ustar", "gnu"])
def test_fast_path_agrees_with_parse_header_on_damaged_headers(tmp_path, fmt, scan_mode):
    """Flip bytes in the fields the fast path reads; both paths must give the same index or error."""
    if scan_mode == "parallel":
        pytest.skip("160 scans: in-process only (test_tarindex_parallel compares the two modes)")
    import random

    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=2, fmt=fmt, train_max=6, long_names=True))
    clean = syn.train_tar.read_bytes()
    index = tarindex.scan(syn.train_tar, True)
    headers = [int(o) - BLOCK for o in index.offsets]
    rng = random.Random(fmt)
    fields = [range(0, 100), range(124, 136), range(148, 156), [156], range(257, 265), [345]]
    bad = tmp_path / "ILSVRC2012_img_train.tar"
    for i in range(80):
        data = bytearray(clean)
        header = rng.choice(headers)
        at = header + rng.choice(rng.choice(fields))
        data[at] = rng.choice((0, 0x20, 0x30, 0x37, 0x80, rng.randrange(256), data[at] ^ 1))
        if i % 2 and not 148 <= at - header < 156:  # re-sign the header: only the field is odd
            data[header + 148:header + 156] = b" " * 8
            data[header + 148:header + 156] = b"%06o\x00 " % sum(data[header:header + BLOCK])
        bad.write_bytes(bytes(data))
        fast = _outcome(bad, True)
        with pytest.MonkeyPatch.context() as mp:
            _slow_only(mp)
            slow = _outcome(bad, True)
        assert fast == slow, (at, data[at])

