"""Fault matrix, network row: 404, repeated 500s, refused connections, a server that never
answers. Retries back off, the total time is bounded and stated in --help, the error is one line."""
from __future__ import annotations

import time

import pytest

from ltextract.benchmarks import fetch, get
from ltextract.errors import FetchError
from ltextract.benchmarks.fetch import fetch_url
from fault_util import build, fails
from lt_util import run_cli

NO_PROXY = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
#: Sum of the default backoff pauses between the 4 attempts: 0.5 + 1 + 2 s.
PAUSES = sum(fetch.BACKOFF * 2 ** i for i in range(fetch.RETRIES))


def test_http_404_fails_at_once(http_server, manual, out, env):
    url = http_server.url("/ImageNet_LT_test.txt")
    r = build(manual, out, {**env, **NO_PROXY}, "--split", "test", "--split-url", f"test={url}")
    fails(r, f"HTTP 404 from {url}")
    assert http_server.hits("/ImageNet_LT_test.txt") == 1  # "no such list" is not retried, so no pause


def test_http_500_every_time_retries_with_backoff(http_server, manual, out, env):
    url = http_server.route("/l.txt", http_server.Reply(500, b"oops"))
    started = time.monotonic()
    r = build(manual, out, {**env, **NO_PROXY}, "--split", "test", "--split-url", f"test={url}")
    elapsed = time.monotonic() - started
    fails(r, f"HTTP 500 after {fetch.RETRIES + 1} attempts from {url}")
    assert http_server.hits("/l.txt") == fetch.RETRIES + 1
    assert PAUSES <= elapsed  # it paused between attempts (a pause is never shorter)


def test_connection_refused_retries_then_names_the_cause(http_refused_url, manual, out, env):
    started = time.monotonic()
    r = build(manual, out, {**env, **NO_PROXY}, "--split", "test", "--split-url",
              f"test={http_refused_url}")
    elapsed = time.monotonic() - started
    fails(r, "connection refused", f"after {fetch.RETRIES + 1} attempts", http_refused_url)
    assert PAUSES <= elapsed  # it paused between attempts (a pause is never shorter)


@pytest.mark.parametrize("how", ["silent port", "handler never answers"])
def test_server_that_never_answers_is_bounded(http_server, http_silent_url, how):
    """Short timeouts stand in for the defaults; the bound is total + the timeouts, as --help says."""
    url = http_silent_url if how == "silent port" else http_server.route(
        "/l.txt", http_server.Reply(hang=True))
    timeout, total = (0.3, 0.4), 1.0
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out") as e:
        fetch_url(url, timeout=timeout, retries=50, backoff=0.05, total=total)
    # unbounded, 51 attempts would take over 15 s; the margin is for a loaded machine
    assert time.monotonic() - started < total + sum(timeout) + 5
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("command", ["build", "fetch"])
def test_help_states_the_download_bound(command):
    r = run_cli(command, "--help")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0
    assert f"{fetch.RETRIES + 1} attempts" in text
    per_mirror = fetch.TOTAL + sum(fetch.TIMEOUT)
    assert f"at most about {per_mirror:g} s" in text
    urls = sum(len(s.mirrors) for s in get().splits if s.default)
    assert f"{urls} published mirrors" in text
    assert f"at most about {urls * per_mirror / 60:.0f} min" in text
    assert f"backoff pauses ({PAUSES:g} s)" in text


def test_offline_build_names_every_mirror_and_the_way_out(tmp_path, http_refused_url, manual,
                                                         monkeypatch, capsys):
    """No mirror answers (as offline): every list's every mirror is tried, as --help counts
    them, and the one error line names each of them and how to build without a network."""
    from dataclasses import replace

    from ltextract.benchmarks import imagenet_lt
    from lt_util import error_line, with_split
    from test_fault_lists import run_inprocess

    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(fetch, "sleep", lambda s: None)  # the backoff pauses, not what is tested
    bench = imagenet_lt.IMAGENET_LT
    defaults = [s for s in bench.splits if s.default]  # what a build without --split reads
    mirrors = {s.name: tuple(f"{http_refused_url}/{s.name}/{i}" for i in range(len(s.mirrors)))
               for s in defaults}
    for s in defaults:
        bench = with_split(replace(s, mirrors=mirrors[s.name]), bench)
    monkeypatch.setattr(imagenet_lt, "IMAGENET_LT", bench)
    code, _, stderr = run_inprocess(monkeypatch, capsys, "build", "--manual-dir", str(manual),
                                    "--out", str(tmp_path / "out"))
    assert code == 1
    line = error_line(stderr)
    assert line.count("connection refused") == sum(map(len, mirrors.values())) == 5, line
    for s in defaults:
        assert s.pin.filename in line
    assert line.endswith("(offline? pass --splits-dir DIR with ImageNet_LT_train.txt,"
                         " ImageNet_LT_val.txt and ImageNet_LT_test.txt)"), line
