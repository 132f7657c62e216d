"""splits.py: every parse rule with its file:line message, the pins, totals and list sources."""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltextract.benchmarks import Pin, SplitSpec
from ltextract.benchmarks.classes import wnids
from ltextract.benchmarks.imagenet_lt import IMAGENET_LT
from ltextract.benchmarks.lists import (Entry, SplitList, _parse_clean, _parse_lines, canonical_sha256,
                                        check_split, check_totals, list_canonical_sha256, parse_list)
from ltextract.benchmarks.load import load_lists
from ltextract.errors import FetchError, ListError
from lt_util import with_split

SPLITS = IMAGENET_LT.default_splits
PINS = {s: IMAGENET_LT.split(s).pin for s in SPLITS}

W = wnids()
GOOD = ("train/n01440764/n01440764_190.JPEG 0\n"
        "train/n01443537/n01443537_2.JPEG 1\n"
        "train/n15075141/n15075141_7.JPEG 999\n")


def lines_of(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def one_per_class(top: str = "train", per: int = 1) -> bytes:
    """A list over all 1000 classes, as check_totals wants."""
    return "".join(f"{top}/{w}/{w}_{k}.JPEG {i}\n" for i, w in enumerate(W) for k in range(per)).encode()


def pin_for(data: bytes, split: str, per_class: tuple[int, int] = (1, 1)) -> Pin:
    return Pin(split, f"ImageNet_LT_{split}.txt", data.count(b"\n"), len(data),
               hashlib.sha256(data).hexdigest(), per_class)


def error(data: bytes, name: str = "L.txt") -> str:
    with pytest.raises(ListError) as e:
        parse_list(data, name)
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg
    return msg


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lists"


# --- tables ----------------------------------------------------------------------------------

def test_pins_and_tops():
    assert SPLITS == ("train", "val", "test") and tuple(PINS) == SPLITS
    assert IMAGENET_LT.origins == {"train": "train", "val": "train", "test": "val",
                                   **{s: "val" for s in IMAGENET_LT.split_names[3:]}}
    assert [(p.filename, p.lines, p.per_class) for p in PINS.values()] == [
        ("ImageNet_LT_train.txt", 115_846, (5, 1280)),
        ("ImageNet_LT_val.txt", 20_000, (20, 20)),
        ("ImageNet_LT_test.txt", 50_000, (50, 50))]
    for split, pin in PINS.items():
        assert pin.split == split and len(pin.sha256) == 64 and int(pin.sha256, 16) >= 0
        lo, hi = pin.per_class
        assert lo * 1000 <= pin.lines <= hi * 1000


# --- parse_list: accepted --------------------------------------------------------------------

def test_good_list():
    entries = parse_list(GOOD.encode(), "L.txt")
    assert entries[0] == Entry("train", "n01440764", "n01440764_190.JPEG", 0, 1)
    assert entries[0].path == "train/n01440764/n01440764_190.JPEG"
    assert [(e.label, e.line) for e in entries] == [(0, 1), (1, 2), (999, 3)]
    with pytest.raises(AttributeError):
        entries[0].label = 5  # type: ignore[misc]


@pytest.mark.parametrize("variant", [
    GOOD.replace("\n", "\r\n"),              # CRLF
    GOOD.rstrip("\n"),                       # no final newline
    GOOD.replace("\n", "\r\n").rstrip("\r\n"),
    GOOD + "\n\n   \n\r\n",                  # blank lines at the end
    "\ufeff" + GOOD,                         # UTF-8 byte-order mark
    GOOD.replace(" ", "\t"),                 # a tab separates as well
    GOOD.replace(" ", "  \t "),              # so does any run of spaces and tabs
])
def test_accepted_variants(variant):
    assert parse_list(variant.encode(), "L.txt") == parse_list(GOOD.encode(), "L.txt")


def test_val_tops_and_odd_but_valid_names():
    data = lines_of("val/n01440764/ILSVRC2012_val_00000293.JPEG 0",
                    "val/n01440764/a-b+c=d,e;f'g(h)~.jpeg 0", "val/n01440764/...x 0",
                    f"val/n01440764/{'x' * 255} 0")
    assert [e.file for e in parse_list(data, "L.txt")][1:3] == ["a-b+c=d,e;f'g(h)~.jpeg", "...x"]


def test_only_imagenet_file_names_carry_a_wnid():
    """`n<8 digits>_` starts a name that carries its class; other names (val's, a custom list's)
    carry none and are not compared with their folder."""
    data = lines_of("train/n01440764/n01440764_1.JPEG 0", "train/n01440764/n0144376_1.JPEG 0",
                    "train/n01440764/n014437640_1.JPEG 0", "train/n01440764/n01443537.JPEG 0",
                    "train/n01440764/ILSVRC2012_val_00000001.JPEG 0", "train/n01443537/n01443537_2 1")
    assert len(parse_list(data, "L.txt")) == 6


# --- parse_list: rejected, each rule with its line ------------------------------------------

@pytest.mark.parametrize("bad,what", [
    ("train/n01440764/n01440764_1.JPEG", "got 1 field(s)"),
    ("train/n01440764/n01440764_1.JPEG 0 0", "got 3 field(s)"),
    ("train/n01440764 0", "has 2 parts"),
    ("train/n01440764/x/y.JPEG 0", "has 4 parts"),
    ("/train/n01440764/n01440764_1.JPEG 0", "absolute path '/train/n01440764/n01440764_1.JPEG'"),
    ("train/n01440764/../x.JPEG 0", "contains '..'"),
    ("train/../n01440764/x.JPEG 0", "contains '..'"),
    ("train/n01440764/.. 0", "contains '..'"),
    ("train/n01440764/. 0", "file name '.' is not a file"),
    ("train//x.JPEG 0", "has an empty component"),
    ("train/n01440764/ 0", "has an empty component"),
    ("test/n01440764/x.JPEG 0", "top folder 'test' is neither 'train' nor 'val'"),
    ("./train/n01440764/x.JPEG 0", "has 4 parts"),
    ("train/n0144076/x.JPEG 0", "'n0144076' is not a wnid (n + 8 digits)"),
    ("train/N01440764/x.JPEG 0", "is not a wnid"),
    ("train/n99999999/x.JPEG 0", "n99999999 is not one of the 1000 ILSVRC2012 wnids"),
    ("train/n01440764/x.JPEG 3", "label 3 does not match n01440764 (its index is 0)"),
    ("train/n01443537/x.JPEG 1000", "label 1000 does not match n01443537 (its index is 1)"),
    ("train/n01440764/x.JPEG 123456", "label 123456 is not one of the 1000 ILSVRC2012 labels"),
    ("train/n01440764/x.JPEG -1", "label '-1' is not a plain non-negative integer"),
    ("train/n01440764/x.JPEG 00", "label '00' is not a plain non-negative integer"),
    ("train/n01440764/x.JPEG zero", "label 'zero' is not"),
    ("train/n01440764/x.JPEG 0.0", "label '0.0' is not"),
    ("train/n01440764/a\\b.JPEG 0", "contains a backslash"),
    ("train/n01440764/caf\u00e9.JPEG 0", "non-ASCII character U+00E9"),
    ("train/n01440764/x\u00a0y.JPEG 0", "non-ASCII character U+00A0"),
    ("train/n01440764/x\x07.JPEG 0", "control character U+0007"),
    ("train/n01440764/x\x1b[2J.JPEG 0", "control character U+001B"),
    ("train/n01440764/x.JPEG\x0b0", "control character U+000B"),
    ("train/n01440764/x\r.JPEG 0", "control character U+000D"),
    (f"train/n01440764/{'x' * 256} 0", "file name is 256 characters long (limit 255)"),
    (" train/n01440764/x.JPEG 0", "line starts with whitespace"),
    ("train/n01440764/x.JPEG 0 ", "line ends with whitespace"),
    ("train/n01440764/x.JPEG 0\t\r", "line ends with whitespace"),
    ("train/n01440764/x.JPEG,0", "got 1 field(s)"),
    ("train/n01440764/n01443537_99999.JPEG 0",
     "file name's wnid n01443537 differs from its folder n01440764"),
    ("val/n01443537/n01440764_1.JPEG 1", "file name's wnid n01440764 differs from its folder n01443537"),
])
def test_bad_line(bad, what):
    data = lines_of(GOOD.splitlines()[0], bad, GOOD.splitlines()[1])
    msg = error(data, "ImageNet_LT_train.txt")
    assert msg.startswith("ImageNet_LT_train.txt:2: ") and what in msg, msg


def test_long_line_fails_fast():
    started = time.monotonic()
    msg = error(GOOD.encode() + b"train/n01440764/" + b"x" * (10 << 20))
    assert time.monotonic() - started < 10  # does not hang (~0.02 s here; no timing target)
    assert msg == "L.txt:4: line is 10,485,776 characters long (limit 1,024); not a list?"


def test_size_limits(tmp_path, monkeypatch):
    from ltextract.benchmarks import lists as splits

    monkeypatch.setattr(splits, "MAX_BYTES", 1000)
    monkeypatch.setattr(splits, "MAX_LINES", 50)
    assert error(b"\n" * 51) == "L.txt: 51 lines is too many for a list (limit 50)"
    big = GOOD.encode() * 20
    assert error(big) == f"L.txt: {len(big):,} bytes is too large for a list (limit 1,000)"
    d = write_dir(tmp_path / "lists", train=GOOD.encode() * 20)
    with pytest.raises(ListError, match=f"ImageNet_LT_train.txt: {len(GOOD) * 20:,} bytes is too large"):
        load_lists(["train"], splits_dir=d)


def test_blank_line_in_the_middle():
    assert error((GOOD + "\n" + GOOD.replace("_", "-")).encode()) == (
        "L.txt:4: blank line before the end of the list")
    assert error((" \r\n" + GOOD).encode()).startswith("L.txt:1: blank line")


def test_duplicate_cites_both_lines():
    first = GOOD.splitlines()[0]
    assert error((GOOD + first + "\n").encode()) == (
        "L.txt:4: duplicate of line 1 (train/n01440764/n01440764_190.JPEG)")
    crlf_tab = (GOOD + first.replace(" ", "\t")).replace("\n", "\r\n")
    assert error(crlf_tab.encode()).startswith("L.txt:4: duplicate of line 1")
    assert len(parse_list(lines_of("train/n01440764/x.JPEG 0", "train/n01443537/x.JPEG 1"), "L")) == 2


def test_one_top_per_list():
    data = lines_of("train/n01440764/a.JPEG 0", "train/n01440764/b.JPEG 0", "val/n01440764/c.JPEG 0")
    assert error(data) == ("L.txt:3: top folder val differs from train on line 1;"
                           " one list points into one tar")


@pytest.mark.parametrize("data", [b"", b"\n", b"\n\n\r\n  \n", b"\xef\xbb\xbf"])
def test_no_entries(data):
    assert error(data) == "L.txt: no entries"


def test_binary_junk():
    assert error(GOOD.encode() + b"tr\0in") == "L.txt:4: not a text list: NUL byte"
    assert error(GOOD.encode() + b"\n\xff\xfe") == "L.txt:5: not a text list: byte 0xff is not UTF-8"
    assert error(b"\x1f\x8b\x08\x00" + bytes(40)) == "L.txt: not a text list: it is gzip-compressed"
    assert error(bytes(range(256)) * 4).startswith("L.txt:1: not a text list:")


@pytest.mark.parametrize("page,kind", [
    (b"<!DOCTYPE html>\n<html><head><title>Google Drive - Quota exceeded</title>", "an HTML page"),
    (b"\r\n  <HTML lang=en><body>404</body></HTML>", "an HTML page"),
    (b"<head><meta charset=utf-8></head>", "an HTML page"),
    (b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "an XML document"),
])
def test_web_pages(page, kind):
    assert error(page) == f"L.txt: looks like {kind}, not a list"


def test_full_size_list_parses():
    """Its speed (~0.2 s) is measured by `make bench`, not asserted on a shared machine."""
    data = "".join(f"train/{W[i % 1000]}/{W[i % 1000]}_{i}.JPEG {i % 1000}\n"
                   for i in range(115_846)).encode()
    entries = parse_list(data, "ImageNet_LT_train.txt")
    assert len(entries) == 115_846 and entries[-1].line == 115_846


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(alphabet="trainvl/n0123456789 .JPEG\t\r\n\\-_x", max_size=200)
       .map(str.encode))
def test_any_bytes_parse_or_fail_cleanly(data):
    try:
        entries = parse_list(data, "F.txt")
    except ListError as e:
        msg = str(e)
        assert msg.startswith("F.txt") and "\n" not in msg and len(msg) < 300
    else:
        assert entries and all(e.label == W.index(e.wnid) for e in entries)


_names = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                        blacklist_characters="/\\"), min_size=1, max_size=40
                 ).filter(lambda s: not re.match(r"n[0-9]{8}_", s))  # (a name carrying a wnid)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["train", "val"]),
       st.dictionaries(st.tuples(st.integers(0, 999), _names.filter(lambda s: s not in (".", ".."))),
                       st.none(), min_size=1, max_size=30),
       st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_round_trip(top, rows, eol, final_eol):
    text = eol.join(f"{top}/{W[i]}/{name} {i}" for i, name in rows) + (eol if final_eol else "")
    entries = parse_list(text.encode(), "R.txt")
    assert [(e.origin, e.wnid, e.file, e.label, e.line) for e in entries] == [
        (top, W[i], name, i, n) for n, (i, name) in enumerate(rows, 1)]


# lines that are fine alone, and faults that show only across lines (duplicates, labels, tops)
_line = st.one_of(
    st.builds(lambda top, i, name, ok, gap, cr: f"{top}/{W[i]}/{name}{gap}{i if ok else (i + 1) % 1000}{cr}",
              st.sampled_from(["train", "val"]), st.integers(0, 2), st.sampled_from(["a.JPEG", "b,c", "a", f"{W[0]}_1.JPEG"]),
              st.booleans(), st.sampled_from([" ", "\t", " \t"]), st.sampled_from(["", "\r"])),
    st.sampled_from(["", " ", "train/n01440764/a.JPEG", "train/n01440764/a.JPEG 0 0", "x" * 1100]))


@settings(max_examples=500, deadline=None)
@given(st.lists(_line, max_size=8), st.booleans())
def test_whole_list_check_agrees_with_line_by_line(lines, final_eol):
    """The column-wise check returns exactly the line-by-line result, or leaves the list to it."""
    text = "\n".join(lines) + ("\n" if final_eol and lines else "")
    split = text.split("\n")
    if split[-1] == "":
        split.pop()
    try:
        slow = _parse_lines(split, "F.txt")
    except ListError:
        slow = None
    fast = _parse_clean(text, split)
    assert fast == slow or fast is None
    if slow is not None and all(line.strip() for line in split):
        assert fast == slow  # a list without faults never takes the slow path


def _canonical_reference(entries: list[Entry]) -> str:
    """What canonical_sha256 means, hashed line by line."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.origin}/{e.wnid}/{e.file} {e.label}\n".encode())
    return h.hexdigest()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 999), _names.filter(lambda s: s not in (".", ".."))), min_size=1,
                max_size=12, unique=True),
       st.sampled_from([" ", "\t", "  ", " \t"]), st.sampled_from(["\n", "\r\n"]), st.booleans(),
       st.sampled_from(["", "\n", " \n", "\n\n", "\x0c"]), st.booleans())
def test_list_canonical_sha256_is_what_the_list_says(rows, gap, eol, final_eol, blank_tail, bom):
    """The raw digest stands for the canonical one only when the bytes are the canonical lines."""
    text = eol.join(f"train/{W[i]}/{name}{gap}{i}" for i, name in rows) + (eol if final_eol else "")
    data = ("\ufeff" if bom else "").encode() + (text + (blank_tail if final_eol else "")).encode()
    entries = parse_list(data, "C.txt")
    want = _canonical_reference(entries)
    assert list_canonical_sha256(data, entries, hashlib.sha256(data).hexdigest()) == want
    assert canonical_sha256((e.path, e.label) for e in entries) == want


# --- check_split / check_totals --------------------------------------------------------------

def test_check_split():
    train = parse_list(GOOD.encode(), "L.txt")
    spec = IMAGENET_LT.split
    check_split(spec("train"), train, "L.txt")
    check_split(spec("val"), train, "L.txt")
    with pytest.raises(ListError, match=r"^L.txt: the test list must point into val/, but line 1 is"
                                        r" train/n01440764/n01440764_190.JPEG$"):
        check_split(spec("test"), train, "L.txt")
    check_split(spec("test"), parse_list(GOOD.replace("train/", "val/").encode(), "L.txt"), "L.txt")


def test_check_totals():
    data = one_per_class(per=2)
    entries = parse_list(data, "L.txt")
    check_totals(pin_for(data, "val", (2, 2)), entries, "L.txt")
    check_totals(pin_for(data, "val", (1, 3)), entries, "L.txt")
    with pytest.raises(ListError, match=r"^L.txt: 2,000 entries, the published val list has 1,999$"):
        check_totals(Pin("val", "x", 1999, 0, "", (1, 3)), entries, "L.txt")
    with pytest.raises(ListError, match="^L.txt: class n01440764 has 2 images, expected 5$"):
        check_totals(pin_for(data, "val", (5, 5)), entries, "L.txt")
    with pytest.raises(ListError, match="expected between 3 and 9$"):
        check_totals(pin_for(data, "val", (3, 9)), entries, "L.txt")
    short = entries[2:]
    with pytest.raises(ListError, match="^L.txt: 999 classes, expected 1000$"):
        check_totals(Pin("val", "x", len(short), 0, "", (1, 3)), short, "L.txt")


# --- load_lists ------------------------------------------------------------------------------

def write_dir(path: Path, **lists: bytes) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for split, data in lists.items():
        (path / f"ImageNet_LT_{split}.txt").write_bytes(data)
    return path


def test_custom_lists_from_a_folder(tmp_path):
    train, test = GOOD.encode(), GOOD.replace("train/", "val/").encode()
    d = write_dir(tmp_path / "lists", train=train, test=test)
    warnings: list[str] = []
    got = load_lists(["train", "test"], splits_dir=d, warn=warnings.append)
    digest = hashlib.sha256(train).hexdigest()
    assert got["train"] == SplitList("train", parse_list(train, "x"), digest,
                                     str(d / "ImageNet_LT_train.txt"), False, digest)
    assert got["test"].source == str(d / "ImageNet_LT_test.txt")
    assert warnings == [f"ImageNet_LT_{s}.txt is not the published list (sha256 "
                        f"{hashlib.sha256(b).hexdigest()[:12]}…); recording it as custom"
                        for s, b in (("train", train), ("test", test))]


def test_missing_or_bad_list_in_folder_cites_its_path(tmp_path):
    d = write_dir(tmp_path / "lists", train=lines_of("train/n01440764/x.JPEG 0", "train/n01440764 0"))
    with pytest.raises(ListError, match=f"^{re.escape(str(d / 'ImageNet_LT_val.txt'))} not found$"):
        load_lists(["val", "train"], splits_dir=d)
    with pytest.raises(ListError, match=f"^{re.escape(str(d / 'ImageNet_LT_train.txt'))}:2: "):
        load_lists(["train"], splits_dir=d)


def test_wrong_tar_and_unknown_split(tmp_path):
    d = write_dir(tmp_path / "lists", test=GOOD.encode())
    with pytest.raises(ListError, match="the test list must point into val/"):
        load_lists(["test"], splits_dir=d)
    with pytest.raises(ListError, match="unknown split 'dev'"):
        load_lists(["dev"], splits_dir=d)


def test_pinned_local_list_is_published_and_totalled(tmp_path):
    data = one_per_class()
    bench = with_split(SplitSpec("val", "train", pin_for(data, "val")))
    d = write_dir(tmp_path / "lists", val=data)
    warnings: list[str] = []
    got = load_lists(["val"], splits_dir=d, warn=warnings.append, benchmark=bench)["val"]
    assert got.published and got.sha256 == bench.split("val").pin.sha256 and not warnings
    bench = with_split(SplitSpec("val", "train", pin_for(data, "val", (2, 20))))
    with pytest.raises(ListError, match="class n01440764 has 1 images, expected between 2 and 20"):
        load_lists(["val"], splits_dir=d, benchmark=bench)


def test_custom_url_wins_and_is_not_cached(tmp_path, http_server, http_session, cache):
    data = GOOD.encode()
    url = http_server.route("/mine.txt", http_server.Reply(body=data))
    d = write_dir(tmp_path / "lists", train=lines_of("not a list"))
    warnings: list[str] = []
    got = load_lists(["train"], splits_dir=d, split_urls={"train": url}, warn=warnings.append,
                     session=http_session)["train"]
    assert (got.source, got.published, len(got.entries)) == (url, False, 3)
    assert warnings == [f"{url} is not the published list (sha256"
                        f" {hashlib.sha256(data).hexdigest()[:12]}…); recording it as custom"]
    assert not cache.exists()


def test_custom_url_errors_cite_the_url(http_server, http_session):
    url = http_server.route("/mine.txt", http_server.Reply(body=lines_of("train/n01440764/x 5")))
    with pytest.raises(ListError, match=f"^{re.escape(url)}:1: label 5 does not match"):
        load_lists(["train"], split_urls={"train": url}, session=http_session)
    with pytest.raises(FetchError, match=f"^HTTP 404 from {re.escape(http_server.url('/nope'))}$"):
        load_lists(["val"], split_urls={"val": http_server.url("/nope")}, session=http_session)


def test_published_list_downloaded_then_cached(http_server, http_session, cache):
    data = one_per_class(top="val")
    url = http_server.route("/test.txt", http_server.Reply(body=data))
    bench = with_split(SplitSpec("test", "val", pin_for(data, "test"), (http_server.url("/gone.txt"), url)))
    warnings: list[str] = []
    first = load_lists(["test"], warn=warnings.append, session=http_session, benchmark=bench)["test"]
    assert (first.source, first.published, len(first.entries)) == (url, True, 1000)
    assert len(warnings) == 1 and "HTTP 404" in warnings[0]  # the first mirror failed
    again = load_lists(["test"], warn=warnings.append, session=http_session, benchmark=bench)["test"]
    assert again.source == str(cache / "ImageNet_LT_test.txt") and again.entries == first.entries
    assert http_server.hits("/test.txt") == 1 and len(warnings) == 1
