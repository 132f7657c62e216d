"""fetch.py against a local scripted HTTP server: retries, Drive pages, caps, pins, the cache."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from ltextract.benchmarks import fetch
from ltextract.errors import FetchError
from ltextract.benchmarks.classes import wnids
from ltextract.benchmarks import Benchmark, Pin, SplitSpec
from ltextract.benchmarks.fetch import fetch_lists, fetch_published, fetch_url, find_confirm_url
from ltextract.benchmarks.imagenet_lt import IMAGENET_LT

SPLITS = IMAGENET_LT.default_splits

FAST = dict(timeout=(0.5, 0.5), retries=2, backoff=0.01)


def small_list(n: int = 30, top: str = "train") -> bytes:
    w = wnids()
    return "".join(f"{top}/{w[i % 7]}/{w[i % 7]}_{i}.JPEG {i % 7}\n" for i in range(n)).encode()


def pin_for(data: bytes, split: str = "val") -> Pin:
    return Pin(split, f"ImageNet_LT_{split}.txt", data.count(b"\n"), len(data),
               hashlib.sha256(data).hexdigest(), (1, 100))


def spec_for(data: bytes, split: str = "val", mirrors: tuple[str, ...] = ()) -> SplitSpec:
    return SplitSpec(split, IMAGENET_LT.split(split).origin, pin_for(data, split), mirrors)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lists"


def drive_form(action: str) -> bytes:
    """The shape of Google Drive's "can't scan this file for viruses" page."""
    return (f'<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>'
            f'<body><form id="download-form" action="{action}" method="get">'
            f'<input type="submit" id="uc-download-link" value="Download anyway"/>'
            f'<input type="hidden" name="id" value="1AjY">'
            f'<input type="hidden" name="export" value="download">'
            f'<input type="hidden" name="confirm" value="t">'
            f'<input type="hidden" name="uuid" value="8f2c-11"></form></body></html>').encode()


HTML = {"Content-Type": "text/html; charset=utf-8"}


# --- fetch_url -------------------------------------------------------------------------------

def test_plain_get(http_server, http_session):
    body = small_list()
    url = http_server.route("/l.txt", http_server.Reply(body=body))
    assert fetch_url(url, session=http_session, **FAST) == body
    assert http_server.hits("/l.txt") == 1


def test_works_without_a_session(http_server):
    url = http_server.route("/l.txt", http_server.Reply(body=b"x"))
    assert fetch_url(url, **FAST) == b"x"


def test_404_is_not_retried(http_server, http_session):
    url = http_server.url("/missing.txt")
    with pytest.raises(FetchError) as e:
        fetch_url(url, session=http_session, **FAST)
    assert str(e.value) == f"HTTP 404 from {url}"
    assert http_server.hits("/missing.txt") == 1


def test_500_then_200_is_retried(http_server, http_session):
    R = http_server.Reply
    url = http_server.route("/l.txt", R(500), R(503), R(body=b"ok"))
    assert fetch_url(url, session=http_session, **FAST) == b"ok"
    assert http_server.hits("/l.txt") == 3


def test_truncated_body_is_retried(http_server, http_session):
    R = http_server.Reply
    cut = R(body=b"train/n0144", headers={"Content-Length": "99", "Connection": "close"})
    url = http_server.route("/l.txt", cut, R(body=b"whole"))
    assert fetch_url(url, session=http_session, **FAST) == b"whole"
    assert http_server.hits("/l.txt") == 2


def test_always_500_gives_up(http_server, http_session):
    url = http_server.route("/l.txt", http_server.Reply(500))
    with pytest.raises(FetchError, match=r"^HTTP 500 after 3 attempts from http://127\.0\.0\.1"):
        fetch_url(url, session=http_session, **FAST)
    assert http_server.hits("/l.txt") == 3


def test_backoff_doubles_and_deadline_stops_retries(http_server, http_session, monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(fetch, "sleep", pauses.append)
    url = http_server.route("/l.txt", http_server.Reply(502))
    with pytest.raises(FetchError, match="after 4 attempts"):
        fetch_url(url, session=http_session, retries=3, backoff=0.5)
    assert pauses == [0.5, 1.0, 2.0]
    pauses.clear()
    with pytest.raises(FetchError, match="after 2 attempts"):  # a third try would pass `total`
        fetch_url(url, session=http_session, retries=5, backoff=0.5, total=0.8)
    assert pauses == [0.5]


def test_timeout_note_states_the_bound():
    assert "4 attempts" in fetch.TOTAL_TIMEOUT_NOTE and f"{fetch.TOTAL:g} s" in fetch.TOTAL_TIMEOUT_NOTE


def test_silent_server_times_out(http_silent_url, http_session):
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out after 2 attempts"):
        fetch_url(http_silent_url, session=http_session, timeout=(0.3, 0.3), retries=1, backoff=0.01)
    assert time.monotonic() - started < 30  # ~0.6 s: only a hang, not a loaded machine, fails it


def test_hanging_handler_times_out(http_server, http_session):
    url = http_server.route("/l.txt", http_server.Reply(hang=True))
    with pytest.raises(FetchError, match="timed out"):
        fetch_url(url, session=http_session, timeout=(0.3, 0.3), retries=0)


def test_connection_refused(http_refused_url, http_session):
    with pytest.raises(FetchError) as e:
        fetch_url(http_refused_url, session=http_session, **FAST)
    msg = str(e.value)
    assert "connection refused" in msg and http_refused_url in msg and "\n" not in msg


def test_trickling_server_hits_the_total_limit(http_server, http_session):
    url = http_server.route("/l.txt", http_server.Reply(body=b"x" * 2000, drip=0.02))
    started = time.monotonic()
    with pytest.raises(FetchError, match="too slow"):
        fetch_url(url, session=http_session, total=0.4, **FAST)
    assert time.monotonic() - started < 20  # the whole body would take 40 s


def test_size_cap_from_content_length(http_server, http_session):
    url = http_server.route("/big.txt", http_server.Reply(body=b"x" * 5000))
    with pytest.raises(FetchError, match="^a 5,000-byte response exceeds the 1,000-byte limit from"):
        fetch_url(url, session=http_session, max_bytes=1000, **FAST)


def test_size_cap_while_streaming(http_server, http_session):
    url = http_server.route("/big.txt", http_server.Reply(body=b"x" * 300_000, length=False))
    with pytest.raises(FetchError, match="^the response exceeds the 100,000-byte limit from http"):
        fetch_url(url, session=http_session, max_bytes=100_000, **FAST)
    ok = http_server.route("/ok.txt", http_server.Reply(body=b"y" * 300_000, length=False))
    assert fetch_url(ok, session=http_session, **FAST) == b"y" * 300_000


@pytest.mark.parametrize("url,what", [
    ("ftp://example.org/x.txt", "unsupported URL"), ("file:///etc/passwd", "unsupported URL"),
    ("example.org/x", "unsupported URL"), ("http://", "unsupported URL"),
    ("http://[::1/x", "malformed URL"), ("http://host:99999/x", "malformed URL"),
])
def test_bad_url(url, what):
    with pytest.raises(FetchError, match=f"^{what} "):
        fetch_url(url)


def test_html_notice_is_an_error(http_server, http_session):
    page = b"<!DOCTYPE html><html><body>Too many users have viewed this file recently.</body></html>"
    url = http_server.route("/uc", http_server.Reply(body=page, headers=HTML))
    with pytest.raises(FetchError, match=r"^an HTML page \(quota or notice\) instead of the list"):
        fetch_url(url, session=http_session, **FAST)


def test_html_sniffed_without_content_type(http_server, http_session):
    url = http_server.route("/uc", http_server.Reply(body=b"\n  <HTML><body>hi</body></HTML>"))
    with pytest.raises(FetchError, match="HTML page"):
        fetch_url(url, session=http_session, **FAST)


def test_drive_confirm_form_is_followed(http_server, http_session):
    body = small_list()
    url = http_server.route("/uc", http_server.Reply(body=drive_form(http_server.url("/download")),
                                                     headers=HTML))
    http_server.route("/download", http_server.Reply(body=body))
    assert fetch_url(url, session=http_session, **FAST) == body
    assert http_server.log == ["/uc", "/download?id=1AjY&export=download&confirm=t&uuid=8f2c-11"]


def test_drive_confirm_link_is_followed(http_server, http_session):
    R = http_server.Reply
    page = (b'<html><body><a id="uc-download-link" '
            b'href="/uc?export=download&amp;confirm=Ab_1&amp;id=1AjY">Download anyway</a></body></html>')
    url = http_server.route("/uc", R(body=page, headers=HTML), R(body=b"list"))
    assert fetch_url(url + "?export=download&id=1AjY", session=http_session, **FAST) == b"list"
    assert http_server.log[1] == "/uc?export=download&confirm=Ab_1&id=1AjY"


def test_confirm_followed_only_once(http_server, http_session):
    page = drive_form("/uc")
    url = http_server.route("/uc", http_server.Reply(body=page, headers=HTML))
    with pytest.raises(FetchError, match="HTML page"):
        fetch_url(url, session=http_session, **FAST)
    assert http_server.hits("/uc") == 2


def test_find_confirm_url():
    base = "https://drive.google.com/uc?export=download&id=1AjY"
    form = drive_form("https://drive.usercontent.google.com/download").decode()
    assert find_confirm_url(form, base) == ("https://drive.usercontent.google.com/download"
                                            "?id=1AjY&export=download&confirm=t&uuid=8f2c-11")
    link = '<a href="/uc?export=download&amp;confirm=XyZ&amp;id=1AjY">x</a>'
    assert find_confirm_url(link, base) == (
        "https://drive.google.com/uc?export=download&confirm=XyZ&id=1AjY")
    search = '<form action="/search" method="get"><input type="text" name="q"></form>'
    assert find_confirm_url(search, base) is None
    post = '<form action="/login" method="post"><input type="hidden" name="id" value="1"></form>'
    assert find_confirm_url(post, base) is None
    assert find_confirm_url("<html><body>Quota exceeded</body></html>", base) is None


# --- fetch_published -------------------------------------------------------------------------

def test_mirrors_table():
    assert SPLITS == ("train", "val", "test")
    MIRRORS = {s: IMAGENET_LT.split(s).mirrors for s in SPLITS}
    for split, urls in MIRRORS.items():
        assert urls[0] == ("https://raw.githubusercontent.com/facebookresearch/classifier-balancing"
                           f"/main/data/ImageNet_LT/ImageNet_LT_{split}.txt")
    assert "1Sl1cwy6Dei1I1BMS1YKjI35fkaR1UA_7" in MIRRORS["train"][1]
    assert "1AjYczW4khrQrwPIygXUkHF-Qv4QGEsCF" in MIRRORS["val"][1]


def test_published_is_verified_cached_then_served_from_cache(http_server, http_session, cache):
    data = small_list()
    url = http_server.route("/val.txt", http_server.Reply(body=data))
    got = fetch_published(spec_for(data, "val"), mirrors=[url], session=http_session, **FAST)
    assert got == (data, url)
    assert (cache / "ImageNet_LT_val.txt").read_bytes() == data
    assert [p.name for p in cache.iterdir()] == ["ImageNet_LT_val.txt"]  # no temp files left
    again = fetch_published(spec_for(data, "val"), mirrors=[url], session=http_session, **FAST)
    assert again == (data, str(cache / "ImageNet_LT_val.txt"))
    assert http_server.hits("/val.txt") == 1


def test_corrupted_cache_is_discarded(http_server, http_session, cache):
    data = small_list()
    cache.mkdir(parents=True)
    (cache / "ImageNet_LT_val.txt").write_bytes(data[:-5] + b"9999\n")
    url = http_server.route("/val.txt", http_server.Reply(body=data))
    warnings: list[str] = []
    got = fetch_published(spec_for(data, "val"), mirrors=[url], session=http_session,
                          warn=warnings.append, **FAST)
    assert got == (data, url) and http_server.hits("/val.txt") == 1
    assert len(warnings) == 1 and "discarding the cached" in warnings[0]
    assert (cache / "ImageNet_LT_val.txt").read_bytes() == data


def test_mirrors_tried_in_order(http_server, http_session, cache):
    R = http_server.Reply
    data = small_list()
    urls = [http_server.url("/gone.txt"),
            http_server.route("/wrong.txt", R(body=small_list(31))),
            http_server.route("/down.txt", R(500)),
            http_server.route("/notice", R(body=b"<html>quota</html>", headers=HTML)),
            http_server.route("/good.txt", R(body=data)),
            http_server.route("/unused.txt", R(body=data))]
    warnings: list[str] = []
    got = fetch_published(spec_for(data, "val"), mirrors=urls, session=http_session,
                          warn=warnings.append, **FAST)
    assert got == (data, urls[4])
    assert [p.split("?")[0] for p in http_server.log] == (
        ["/gone.txt", "/wrong.txt", "/down.txt", "/down.txt", "/down.txt", "/notice", "/good.txt"])
    assert len(warnings) == 4
    assert all(w.startswith(f"ImageNet_LT_val.txt from {u}: ") for w, u in zip(warnings, urls))
    assert "HTTP 404" in warnings[0] and "sha256" in warnings[1] and "HTTP 500" in warnings[2]


def test_all_mirrors_fail_in_one_line(http_server, http_session, http_refused_url, cache):
    data = small_list()
    urls = [http_server.url("/gone.txt"),
            http_server.route("/wrong.txt", http_server.Reply(body=data + data)),
            http_refused_url]
    with pytest.raises(FetchError) as e:
        fetch_published(spec_for(data, "val"), mirrors=urls, session=http_session, **FAST)
    msg = str(e.value)
    assert msg.startswith("could not download ImageNet_LT_val.txt from any mirror (")
    assert "\n" not in msg and msg.count(";") == 2
    assert "HTTP 404" in msg and "sha256" in msg and "connection refused" in msg
    assert not cache.exists() or not any(cache.iterdir())


def test_default_mirrors_and_pin_come_from_the_tables(http_server, http_session, monkeypatch,
                                                      cache):
    data = small_list(top="val")
    spec = spec_for(data, "test", (http_server.route("/t.txt", http_server.Reply(body=data)),))
    assert fetch_published(spec, session=http_session, **FAST)[0] == data
    assert (cache / "ImageNet_LT_test.txt").is_file()


def test_unwritable_cache_only_warns(http_server, http_session, tmp_path):
    data = small_list()
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    url = http_server.route("/val.txt", http_server.Reply(body=data))
    warnings: list[str] = []
    got = fetch_published(spec_for(data, "val"), mirrors=[url], session=http_session,
                          warn=warnings.append, cache=tmp_path / "blocker" / "lists", **FAST)
    assert got == (data, url) and len(warnings) == 1 and "cannot cache" in warnings[0]


# --- fetch_lists -----------------------------------------------------------------------------

def test_fetch_lists_into_dest_and_cache(http_server, http_session, tmp_path, cache):
    lists = {s: small_list(20 + i, top="val" if s == "test" else "train")
             for i, s in enumerate(SPLITS)}
    mirrors = {s: [http_server.route(f"/{s}.txt", http_server.Reply(body=d))] for s, d in lists.items()}
    bench = Benchmark("t", "t", tuple(spec_for(d, s) for s, d in lists.items()))
    paths = fetch_lists(tmp_path / "dest", benchmark=bench, mirrors=mirrors, session=http_session, **FAST)
    assert paths == {s: tmp_path / "dest" / f"ImageNet_LT_{s}.txt" for s in SPLITS}
    assert all(paths[s].read_bytes() == lists[s] for s in SPLITS)
    cached = fetch_lists(None, ("val",), benchmark=bench, mirrors=mirrors, session=http_session, **FAST)
    assert cached == {"val": cache / "ImageNet_LT_val.txt"}
    assert all(http_server.hits(f"/{s}.txt") == 1 for s in SPLITS)


def test_fetch_lists_unwritable_dest(http_server, http_session, tmp_path):
    data = small_list()
    (tmp_path / "file").write_text("x")
    mirrors = {"val": [http_server.route("/val.txt", http_server.Reply(body=data))]}
    with pytest.raises(FetchError, match="cannot write"):
        fetch_lists(tmp_path / "file" / "dest", ("val",), mirrors=mirrors,
                    benchmark=Benchmark("t", "t", (spec_for(data),)), session=http_session, **FAST)
