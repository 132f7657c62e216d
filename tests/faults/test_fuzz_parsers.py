"""Fuzzing the two parsers of hostile input: list lines and tar headers (random and mutated real
ones). Each must parse or raise the project's own error (an LtError), never anything else, and
never loop: reads are counted and bounded by the archive's size."""
from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tempfile
from array import array
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import ltextract
from ltextract.tar import index as tarindex
from ltextract.tar import walk as tarwalk
from ltextract.errors import ListError, LtError, TarError
from ltextract.benchmarks.classes import label_of, wnids
from ltextract.benchmarks.lists import parse_list
from ltextract.synth import SynthSpec, make_manual_dir
from ltextract.tar.header import BLOCK, CHKSUM, parse_header, parse_pax
from lt_util import error_line, run_cli

W = wnids()
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- list lines -----------------------------------------------------------------------------

_good_line = st.builds(lambda i, n, top: f"{top}/{W[i]}/{W[i]}_{n}.JPEG {i}",
                       st.integers(0, 999), st.integers(0, 10**6), st.sampled_from(["train", "val"]))
_junk = st.sampled_from(["/", "..", "../", "\0", "\u00e9", "\ufeff", " ", "\t", "\r", "\\", "-1",
                         "n01440764", "n01443537_", "train/", "/etc/passwd", "0", "1000", "\x7f",
                         "\x1b[2J"])


@st.composite
def mutated_line(draw) -> str:
    line = draw(_good_line)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(line)))
        cut = draw(st.integers(0, 3))
        line = line[:at] + draw(_junk | st.text(max_size=3)) + line[at + cut:]
    return line


@FUZZ
@given(st.lists(mutated_line(), min_size=1, max_size=8), st.sampled_from(["\n", "\r\n"]))
def test_list_lines_parse_or_raise_list_error(lines, eol):
    data = eol.join(lines).encode("utf-8", "surrogatepass")
    try:
        entries = parse_list(data, "L.txt")
    except ListError as e:
        assert str(e).startswith("L.txt") and "\n" not in str(e)
        return
    for e in entries:  # what a later stage turns into a path under OUT
        assert "/" not in e.file and e.file not in (".", "..") and e.file.isprintable()
        assert e.file.isascii() and e.label == label_of()[e.wnid] and e.origin in ("train", "val")
        assert not re.match(r"n[0-9]{8}_", e.file) or e.file.startswith(e.wnid + "_")


# --- tar headers ------------------------------------------------------------------------------

class _Tars(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<real tars>"


@pytest.fixture(scope="session")
def real_tars(tmp_path_factory) -> dict[str, tuple[bytes, list[int]]]:
    """Small real tars in each header format (long names and odd members included), each with
    the offsets of its header blocks as a reference walk finds them."""
    tars = _Tars()
    root = tmp_path_factory.mktemp("fuzz")
    for fmt in ("ustar", "gnu", "pax"):
        syn = make_manual_dir(root / fmt, SynthSpec(classes=2, seed=4, fmt=fmt, long_names=True,
                                                    extras=True, train_max=4, train_min=3))
        for which, path in (("train", syn.train_tar), ("val", syn.val_tar)):
            data = path.read_bytes()
            tars[f"{fmt}-{which}"] = (data, header_offsets(data))
    return tars


def header_offsets(data: bytes) -> list[int]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return [m.offset for m in t]


def fix_checksum(block: bytearray) -> None:
    block[CHKSUM] = b" " * 8
    block[CHKSUM] = b"%06o\x00 " % sum(block)


def mutate(tar: bytes, offsets: list[int], data: st.DataObject, edits: list[tuple[int, bytes]],
           checksum_fixed: bool) -> bytearray:
    """Overwrite bytes of some header blocks; with the checksum fixed, the edit reaches the fields."""
    out = bytearray(tar)
    for pos, new in edits:
        at = data.draw(st.sampled_from(offsets))
        block = out[at:at + BLOCK]
        block[pos:pos + len(new)] = new
        del block[BLOCK:]
        if checksum_fixed:
            fix_checksum(block)
        out[at:at + BLOCK] = block
    return out


_tar_name = st.sampled_from(["ustar-train", "gnu-train", "pax-train", "ustar-val", "gnu-val",
                             "pax-val"])
_edit = st.tuples(st.integers(0, BLOCK - 1), st.binary(min_size=1, max_size=12))


@FUZZ
@given(st.binary(min_size=BLOCK, max_size=BLOCK))
def test_random_blocks_parse_or_raise_tar_error(block):
    try:
        header = parse_header(block)
    except TarError:
        return
    assert header.size >= 0


@FUZZ
@given(_tar_name, st.data(), st.lists(_edit, min_size=1, max_size=6), st.booleans())
def test_mutated_real_headers(real_tars, name, data, edits, checksum_fixed):
    tar, offsets = real_tars[name]
    at = data.draw(st.sampled_from(offsets))
    block = mutate(tar[at:at + BLOCK], [0], data, edits, checksum_fixed)
    try:
        header = parse_header(bytes(block))
    except TarError:
        return
    assert header.size >= 0 and isinstance(header.name, str)


@FUZZ
@given(st.binary(max_size=300) | st.lists(
    st.tuples(st.integers(-5, 400), st.text(max_size=12), st.text(max_size=30)), max_size=5).map(
        lambda recs: "".join(f"{n} {k}={v}\n" for n, k, v in recs).encode("utf-8", "surrogatepass")))
def test_pax_records_parse_or_raise_tar_error(data):
    try:
        records = parse_pax(data)
    except TarError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in records.items())


def walk(data: bytes, end: int) -> list[tuple[str, int, int]]:
    """iter_members over `data`, failing (instead of hanging) if it reads more than it could."""
    reads = [0]
    limit = 2 * (len(data) // BLOCK) + 4

    class Counted:
        def __getitem__(self, span: slice) -> bytes:
            reads[0] += 1
            assert reads[0] <= limit, "iter_members keeps reading: a loop"
            return data[span]
    return [(tarwalk.decode_name(name), offset, size)
            for name, offset, size in tarwalk.iter_members(Counted(), 0, end, "T.tar")]


@FUZZ
@given(_tar_name, st.data(), st.lists(_edit, min_size=1, max_size=4), st.booleans(),
       st.floats(0.0, 1.0))
def test_mutated_real_tars_index_or_raise_tar_error(real_tars, name, data, edits, checksum_fixed,
                                                   keep):
    tar = mutate(*real_tars[name], data, edits, checksum_fixed)
    end = max(0, int(len(tar) * keep))  # and sometimes cut short
    try:
        members = walk(bytes(tar), end)
    except LtError as e:
        assert isinstance(e, TarError) and "\n" not in str(e)
        return
    for _, offset, size in members:
        assert 0 <= offset and offset + size <= end


def members_and_error(walk) -> tuple[list, list, list, str]:
    """What a walk appends before it ends, and how it ends (its error, to the letter)."""
    names: list[bytes] = []
    offsets, sizes = array("Q"), array("Q")
    try:
        walk(names, offsets, sizes)
    except TarError as e:
        return names, offsets.tolist(), sizes.tolist(), f"{type(e).__name__}: {e} {vars(e)}"
    return names, offsets.tolist(), sizes.tolist(), ""


def generator_walk(buf, start, end, where, folder):
    def walk(names, offsets, sizes):
        for name, offset, size in tarwalk.iter_members(buf, start, end, where, folder):
            names.append(name)
            offsets.append(offset)
            sizes.append(size)
    return walk


@FUZZ
@given(_tar_name, st.data(), st.lists(_edit, min_size=1, max_size=5), st.booleans(),
       st.floats(0.0, 1.0))
def test_collect_members_equals_iter_members(real_tars, name, data, edits, checksum_fixed, keep):
    """The index scan's loop (`collect_members`) and the general walk agree on every member and
    every error, over the outer tar and each class tar in it, mutated and cut anywhere."""
    tar = bytes(mutate(*real_tars[name], data, edits, checksum_fixed))
    end = int(len(tar) * keep)
    spans = [(0, end, "T.tar", b"")]
    if name.endswith("train"):  # the class tars the outer walk finds, to the end of the file
        outer = members_and_error(generator_walk(tar, 0, len(tar), "T.tar", b""))
        spans += [(offset, min(offset + size, end), f"T.tar: {n!r}", n[:9] + b"/")
                  for n, offset, size in zip(*outer[:3]) if offset <= end]
    for start, stop, where, folder in spans:
        expected = members_and_error(generator_walk(tar, start, stop, where, folder))
        assert members_and_error(partial(tarwalk.collect_members, tar, start, stop, where,
                                         folder)) == expected


_SIZE_FIELDS = ["%011o\x00", "%011o ", "%012o", " %010o\x00", "%o\x00", "%o"]


@st.composite
def header_variant(draw) -> bytes:
    """One member (header, payload, padding) with the field variants walkers must agree on:
    "./" and folder prefixes, 100-byte names, sizes in any octal layout, every typeflag the
    walk treats differently, GNU/ustar/v7 magic, a ustar prefix, a wrong checksum."""
    typeflag = draw(st.sampled_from(b"00007\x005Lx"))
    size = draw(st.integers(0, 1100))
    payload = bytes(size)
    if typeflag == ord("L"):
        payload = draw(st.sampled_from([b"long/" * 30, b"./long.JPEG", b""])) + b"\x00"
    elif typeflag == ord("x"):
        record = b" path=" + draw(st.sampled_from([b"p.JPEG", b"./p", b"n01/p", b""])) + b"\n"
        payload = b"%d%s" % (len(record) + 2, record)
    size = len(payload) if typeflag in b"Lx" else size
    block = bytearray(BLOCK)
    name = draw(st.sampled_from([b"a.JPEG", b"./a.JPEG", b"././b", b"n01/c.JPEG", b"./n01/d",
                                 b"e" * 100, b".", b"", b"f\nnl"]))
    block[0:len(name)] = name
    block[124:136] = (draw(st.sampled_from(_SIZE_FIELDS)) % size).encode().ljust(12, b"\x00")[:12]
    block[156] = typeflag
    block[257:265] = draw(st.sampled_from([b"ustar  \x00", b"ustar\x0000", bytes(8)]))
    if draw(st.booleans()):
        block[345:348] = b"pre"
    fix_checksum(block)
    if draw(st.integers(0, 9)) == 0:
        block[150] ^= 1
    return bytes(block) + payload + bytes(-len(payload) % BLOCK)


@settings(FUZZ, max_examples=1000)
@given(st.lists(header_variant(), min_size=1, max_size=8), st.booleans(), st.data())
def test_collect_members_equals_iter_members_on_header_variants(members, ended, data):
    """The index scan's loop (`collect_members`) and the general walk find the same members and
    raise the same errors, whatever the header variant, wherever the tar ends or is cut (or a
    class tar claims to run past the end of the file)."""
    tar = b"".join(members) + (bytes(2 * BLOCK) if ended else b"")
    start = data.draw(st.sampled_from([0, len(members[0])]))
    end = data.draw(st.integers(start, len(tar)) | st.just(len(tar)) | st.just(len(tar) + BLOCK))
    args = (tar, start, end, "T.tar", data.draw(st.sampled_from([b"", b"n01/"])))
    assert members_and_error(partial(tarwalk.collect_members, *args)) \
        == members_and_error(generator_walk(*args))


@settings(max_examples=60, deadline=None)
@given(_tar_name, st.data(), st.lists(_edit, min_size=1, max_size=4), st.booleans())
def test_scan_of_mutated_nested_tar_or_tar_error(real_tars, name, data, edits, checksum_fixed):
    """The whole scan (outer tar, then each class tar in place) on a mutated file."""
    tar = mutate(*real_tars[name], data, edits, checksum_fixed)
    fd, path = tempfile.mkstemp(suffix=".tar")
    try:
        os.write(fd, bytes(tar))
        os.close(fd)
        try:
            index = tarindex.scan(Path(path), nested=name.endswith("train"))
        except TarError as e:
            assert "\n" not in str(e)
            return
        assert all(o + s <= len(tar) for o, s in zip(index.offsets, index.sizes))
    finally:
        os.unlink(path)


# --- what ltextract reads back from OUT and the cache ---------------------------------------
# A file ltextract wrote may be damaged afterwards (a disk, an editor, a crash of something
# else): each is fuzzed with random bytes, cuts, byte flips and invalid UTF-8, and every command
# that reads it must answer with one line naming the file (an LtError), never a traceback.

_OUT_FILES = {"folders": ["train.csv", "ltextract.json", ".ltextract/train.journal",
                          "ImageNet_LT_train.txt"],
              "webdataset": ["train.csv", "ltextract.json", "train.json", ".ltextract/train.journal",
                             "train/train-000000.tar"],
              # (shard names as globs: their count is in the name)
              "tfds": ["train.csv", ".ltextract/train.journal", "imagenet_lt/1.0.0/dataset_info.json",
                       "imagenet_lt/1.0.0/label.labels.txt", "imagenet_lt/1.0.0/imagenet_lt-train.tfrecord-00000-*"],
              "hf": ["train.csv", ".ltextract/train.journal", "README.md", "data/train-00000-*.parquet"]}
#: the formats that take --shard-size: 3 files a shard, so a split has several
_SHARD_SIZE = {"webdataset": "3files", "hf": "3files"}


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Path]:
    """A small synthetic set and one OUT per format (with its index cache)."""
    root = tmp_path_factory.mktemp("fuzz-out")
    syn = make_manual_dir(root / "manual", SynthSpec(classes=3, seed=9, train_max=6, train_min=2))
    paths = {"manual": syn.manual_dir, "cache": root / "cache"}
    for fmt in _OUT_FILES:
        paths[fmt] = root / fmt
        _api(paths["cache"], lambda fmt=fmt: ltextract.build(
            paths[fmt], syn.manual_dir, splits_dir=syn.manual_dir, format=fmt, quiet=True,
            shard_size=_SHARD_SIZE.get(fmt)))
    return paths


def _api(cache: Path, call):
    before = os.environ.get("LTEXTRACT_CACHE_DIR")
    os.environ["LTEXTRACT_CACHE_DIR"] = str(cache)
    try:
        return call()
    finally:
        if before is None:
            del os.environ["LTEXTRACT_CACHE_DIR"]
        else:
            os.environ["LTEXTRACT_CACHE_DIR"] = before


@st.composite
def damage(draw, data: bytes) -> bytes:
    """The file's bytes damaged one way or another."""
    how = draw(st.sampled_from(["random", "cut", "flip", "utf8", "splice"]))
    if how == "random":
        return draw(st.binary(max_size=600))
    at = draw(st.integers(0, max(0, len(data) - 1)))
    if how == "cut":
        return data[:at]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, max(0, len(out) - 1)))
            if out:
                out[i] = draw(st.integers(0, 255))
        return bytes(out)
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\0", b"\r", b"\n", b",", b'"',
                                 b"{", b"]", b"\t", b"../", b"/etc/passwd", b"-1", b"1e999", b"null",
                                 b'"splits": 3', b"9" * 30]))
    return data[:at] + junk + data[at + (draw(st.integers(0, 3)) if how == "splice" else 0):]


def _one_line_error(e: LtError, name: str) -> None:
    msg = str(e)
    assert "\n" not in msg and msg, msg


@settings(FUZZ, max_examples=40)
@given(st.sampled_from([(fmt, f) for fmt, files in _OUT_FILES.items() for f in files]), st.data())
def test_damaged_out_files_give_one_line_never_a_traceback(built, tmp_path_factory, target, data):
    """verify, stats and a re-run of build over an OUT with one of its files damaged."""
    fmt, name = target
    out = tmp_path_factory.mktemp("damaged") / "out"
    shutil.copytree(built[fmt], out, symlinks=True)
    path = min(out.glob(name))
    path.write_bytes(data.draw(damage(path.read_bytes())))
    calls = {"verify": lambda: ltextract.verify(out, workers=2),
             "stats": lambda: ltextract.stats(out),
             "build": lambda: ltextract.build(out, built["manual"], splits_dir=built["manual"],
                                              format=fmt, shard_size=_SHARD_SIZE.get(fmt), quiet=True)}
    for what, call in calls.items():
        try:
            _api(built["cache"], call)
        except LtError as e:
            _one_line_error(e, name)


@settings(FUZZ, max_examples=40)
@given(st.sampled_from(["train", "val"]), st.data())
def test_damaged_index_cache_is_rescanned(built, tmp_path_factory, which, data):
    """A damaged .ltidx is never trusted and never fails anything: it is scanned again."""
    from ltextract.tar import indexfile

    cache = tmp_path_factory.mktemp("cache")
    shutil.copytree(built["cache"], cache, dirs_exist_ok=True)
    tar = built["manual"] / f"ILSVRC2012_img_{which}.tar"
    path = _api(cache, lambda: indexfile.index_path(tar))
    good = path.read_bytes()
    path.write_bytes(data.draw(damage(good)))
    loaded = _api(cache, lambda: indexfile.load(tar, which == "train"))
    fresh = tarindex.scan(tar, which == "train")
    if loaded is not None:  # then it is the index, whole
        assert (loaded.names, loaded.offsets, loaded.sizes) == (fresh.names, fresh.offsets, fresh.sizes)
    index = _api(cache, lambda: indexfile.load_or_scan(tar, which == "train"))
    assert (index.names, index.offsets, index.sizes) == (fresh.names, fresh.offsets, fresh.sizes)


@pytest.mark.parametrize("fmt,name,bad,where", [
    ("folders", "train.csv", b"\xff", "train.csv:3: "),
    ("folders", "ltextract.json", b"\xc3(", "ltextract.json:2: "),
    ("folders", "ltextract.json", b"{", "ltextract.json:"),
    ("webdataset", "train.json", b"\xed\xa0\x80", "train.json:2: "),
])
def test_invalid_utf8_names_the_file_and_line(built, tmp_path, fmt, name, bad, where):
    """The report of issue 16: a manifest with invalid UTF-8 gave a UnicodeDecodeError traceback."""
    out = tmp_path / "out"
    shutil.copytree(built[fmt], out, symlinks=True)
    lines = (out / name).read_bytes().split(b"\n")
    lines[1 if name.endswith("json") else 2] += bad
    (out / name).write_bytes(b"\n".join(lines))
    with pytest.raises(LtError) as e:
        _api(built["cache"], lambda: ltextract.verify(out))
    assert str(e.value).startswith(str(out / name).replace(name, "") + where), str(e.value)
    r = run_cli("verify", out, env={"LTEXTRACT_CACHE_DIR": str(built["cache"])})
    assert r.returncode == 1 and error_line(r.stderr).startswith(f"ltextract: error: {out / name}:")
