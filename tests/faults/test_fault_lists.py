"""Fault matrix, list rows: lists that are not lists, bad mirrors, and hostile list lines."""
from __future__ import annotations

import hashlib
import random
import sys

import pytest

from ltextract import cli
from ltextract.benchmarks import Pin, SplitSpec, imagenet_lt
from ltextract.benchmarks.classes import wnids
from fault_util import assert_no_partial, build, fails
from lt_util import error_line, with_split

SPLITS = imagenet_lt.IMAGENET_LT.default_splits

W = wnids()
NOT_LISTS = {
    "html": (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>x</body></html>\n",
             "looks like an HTML page"),
    "empty": (b"", "no entries"),
    "junk": (random.Random(7).randbytes(5000), "not a text list"),
    "10 MB line": (b"train/" + b"n" * 10_000_000, "10,000,006 characters long"),
}


@pytest.mark.parametrize("case", NOT_LISTS)
def test_list_that_is_not_a_list(tmp_path, http_server, manual, out, env, want, case):
    data, needle = NOT_LISTS[case]
    (manual / "ImageNet_LT_val.txt").write_bytes(data)
    line = fails(build(manual, out, env), "ImageNet_LT_val.txt", needle)
    if case in ("junk", "10 MB line"):
        assert "ImageNet_LT_val.txt:1:" in line
    assert_no_partial(out, want)
    assert not (out / "val.csv").exists()

    # the same bytes from a URL (a notice page is caught before parsing)
    url = http_server.route("/val.txt", http_server.Reply(
        body=data, headers={"Content-Type": "text/html"} if case == "html" else {}))
    r = build(manual, out, env, "--split", "val", "--split-url", f"val={url}")
    fails(r, url, "HTML page" if case == "html" else needle)


def run_inprocess(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`ltextract ARGS` in this process, so tables such as the mirrors can be patched."""
    monkeypatch.setattr(sys, "argv", ["ltextract", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    captured = capsys.readouterr()
    return e.value.code, captured.out, captured.err


def small_list(split: str) -> bytes:
    top = "val" if split == "test" else "train"
    return "".join(f"{top}/{W[i]}/{W[i]}_{i}.JPEG {i}\n" for i in range(0, 1000, 37)).encode()


BAD_MIRROR = {
    "wrong checksum": (lambda good: good.replace(b"JPEG", b"JPEg", 1), "sha256"),
    "html": (lambda good: b"<html><body>Too many users</body></html>", "HTML page"),
    "empty": (lambda good: b"", "got 0 bytes"),
    "junk": (lambda good: random.Random(3).randbytes(4000), "sha256"),
    "10 MB line": (lambda good: b"x" * 10_000_000, "10,000,000 bytes"),
}


@pytest.mark.parametrize("case", BAD_MIRROR)
def test_bad_default_mirror_falls_through(tmp_path, http_server, monkeypatch, capsys, case):
    """Each list's first mirror serves the bad case: the next mirror is tried and wins; with
    no good mirror left, one line names every mirror's failure."""
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    make_bad, needle = BAD_MIRROR[case]
    R = http_server.Reply
    bench = imagenet_lt.IMAGENET_LT
    for split in SPLITS:
        good = small_list(split)
        pin = Pin(split, f"ImageNet_LT_{split}.txt", good.count(b"\n"), len(good),
                  hashlib.sha256(good).hexdigest(), (1, 1))
        ctype = {"Content-Type": "text/html"} if case == "html" else {}
        bench = with_split(SplitSpec(split, bench.split(split).origin, pin, (
            http_server.route(f"/bad/{split}", R(body=make_bad(good), headers=ctype)),
            http_server.route(f"/good/{split}", R(body=good)))), bench)
    monkeypatch.setattr(imagenet_lt, "IMAGENET_LT", bench)
    code, stdout, stderr = run_inprocess(monkeypatch, capsys, "fetch", "--dest", str(tmp_path / "d"))
    assert code == 0, stderr
    warnings = stderr.splitlines()
    assert len(warnings) == 3 and all("trying the next mirror" in w and needle in w for w in warnings)
    for split in SPLITS:
        assert (tmp_path / "d" / f"ImageNet_LT_{split}.txt").read_bytes() == small_list(split)
        assert http_server.hits(f"/bad/{split}") == 1  # a wrong body is not retried

    for split in SPLITS:  # now the second mirror is gone too
        spec = bench.split(split)
        bench = with_split(SplitSpec(split, spec.origin, spec.pin, (spec.mirrors[0], http_server.url("/nope"))),
                           bench)
    monkeypatch.setattr(imagenet_lt, "IMAGENET_LT", bench)
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache2"))
    code, stdout, stderr = run_inprocess(monkeypatch, capsys, "fetch", "--dest", str(tmp_path / "e"))
    assert code == 1
    line = error_line(stderr)
    assert "ImageNet_LT_train.txt from any mirror" in line and needle in line and "HTTP 404" in line


@pytest.mark.parametrize("bad,needle", [
    ("/train/{w}/{w}_1.JPEG 0", "absolute path"),
    ("train/{w}/../../../etc/passwd 0", "'..'"),
    ("train/{w}/a\0b.JPEG 0", "NUL byte"),
    ("train/{w}/caf\u00e9.JPEG 0", "non-ASCII character U+00E9"),
    ("train/{w}/{w}_1.JPEG 7", "label 7 does not match n01440764"),
    ("train/n01440765/{w}_1.JPEG 0", "n01440765 is not one of the 1000"),
    ("DUP", "duplicate of line 1"),
])
def test_hostile_list_line(manual, out, env, want, bad, needle):
    path = manual / "ImageNet_LT_train.txt"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[0] if bad == "DUP" else bad.format(w="n01440764").encode()
    path.write_bytes(b"\n".join(lines))
    fails(build(manual, out, env), "ImageNet_LT_train.txt:3:", needle)
    assert_no_partial(out, want)
    assert not list(out.glob("*.csv"))
