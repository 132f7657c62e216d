"""Downloading the split lists: mirrors in order, bounded retries, Google Drive's notice pages,
size/sha256 pins, and a cache that only ever holds verified published lists."""
from __future__ import annotations

import contextlib
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from time import monotonic, sleep
from typing import Callable, Iterator, Mapping, Optional, Sequence, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3

from ltextract import __version__
from ltextract.benchmarks import Benchmark, SplitSpec, get
from ltextract.errors import FetchError
from ltextract.files import atomic_write, cache_dir

TIMEOUT = (5.0, 30.0)  # (connect, read between bytes) seconds
RETRIES = 3
BACKOFF = 0.5
TOTAL = 180.0  # wall-clock cap per URL, so a server that trickles bytes cannot stall a build
MAX_BYTES = 64 << 20  # the train list is 4.7 MB; anything near this is not a list
#: For --help texts: how long one download may take before ltextract gives up on a mirror.
TOTAL_TIMEOUT_NOTE = (
    f"Each mirror gets up to {RETRIES + 1} attempts (connect timeout {TIMEOUT[0]:g} s, read timeout"
    f" {TIMEOUT[1]:g} s, backoff {BACKOFF:g} s doubling); retries stop after {TOTAL:g} s, so one"
    f" mirror takes at most about {TOTAL + sum(TIMEOUT):g} s.")

Warn = Callable[[str], None]
_RETRY_STATUS = frozenset({408, 429})  # 4xx codes that mean "try again later", not "no such list"


def _quiet(msg: str) -> None:
    """Default `warn`: library calls stay silent unless the caller passes a sink."""


class _UrlError(FetchError):
    """A FetchError that keeps the short reason apart, so mirror summaries stay one short line."""

    def __init__(self, reason: str, url: str) -> None:
        super().__init__(f"{reason} from {url}")
        self.reason, self.url = reason, url


def new_session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = f"ltextract/{__version__} (+python-requests)"
    return s


def _reason(exc: requests.RequestException) -> str:
    """A short, single-line cause from requests' deeply nested connection errors."""
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
        return "timed out"
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip().lower()
    m = re.search(r"certificate verify failed[^'\")]*", text)
    if m:
        return m.group(0).strip()
    if isinstance(exc, requests.ConnectionError):  # the rest of its text is urllib3 internals
        return f"connection failed ({type(exc).__name__})"
    first = text.splitlines()[0][:120] if text.strip() else ""
    return first or type(exc).__name__


def _is_html(body: bytes, content_type: str) -> bool:
    head = body[:512].lstrip().lower()
    return "text/html" in content_type.lower() or head.startswith((b"<!doctype", b"<html"))


class _ConfirmFinder(HTMLParser):
    """Collect Drive's "download anyway" targets: a link with `confirm=`, or a GET form."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._form: Optional[tuple[str, dict[str, str]]] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and "confirm=" in a.get("href", ""):
            self.links.append(a["href"])
        elif tag == "form" and a.get("method", "get").lower() == "get" and a.get("action"):
            self._form = (a["action"], {})
        elif tag == "input" and self._form is not None and a.get("name"):
            if a.get("type", "text").lower() in ("hidden", "text"):
                self._form[1][a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._form is not None:
            self.forms.append(self._form)
            self._form = None


def find_confirm_url(html: str, base_url: str) -> Optional[str]:
    """The URL behind Drive's virus-scan/confirm page, or None for a plain notice (e.g. quota)."""
    finder = _ConfirmFinder()
    finder.feed(html)
    finder.close()
    for action, fields in finder.forms:
        if "confirm" in fields or "id" in fields:
            url = urljoin(base_url, action)
            return f"{url}{'&' if '?' in url else '?'}{urlencode(fields)}"
    if finder.links:
        return urljoin(base_url, finder.links[0])
    return None


def _get(session: requests.Session, url: str, *, timeout: tuple[float, float], retries: int,
         backoff: float, max_bytes: int, deadline: float) -> tuple[bytes, str]:
    """GET with retries on connection trouble and 5xx; returns (body, content type)."""
    for attempt in range(max(retries, 0) + 1):
        last = attempt >= retries
        try:
            with session.get(url, timeout=timeout, stream=True) as r:
                if r.status_code >= 500 or r.status_code in _RETRY_STATUS:
                    failure = f"HTTP {r.status_code}"
                elif r.status_code >= 400:
                    raise _UrlError(f"HTTP {r.status_code}", url)
                else:
                    return _read_capped(r, url, max_bytes, deadline), r.headers.get("Content-Type", "")
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            failure = _reason(e)
        except requests.RequestException as e:  # bad URL, too many redirects, ...: not transient
            raise _UrlError(_reason(e), url) from None
        pause = backoff * 2 ** attempt
        if last or monotonic() + pause > deadline:
            tries = f" after {attempt + 1} attempts" if attempt else ""
            raise _UrlError(f"{failure}{tries}", url)
        sleep(pause)
    raise AssertionError("unreachable")


def _chunks(r: requests.Response) -> Iterator[bytes]:
    """Body chunks as they arrive: one socket read each, so the deadline is checked often.

    requests' iter_content blocks until a whole chunk is in, which lets a trickling server run
    past any deadline; urllib3's read1 does not.
    """
    read1 = getattr(r.raw, "read1", None)
    if read1 is None:  # urllib3 1.x
        yield from r.iter_content(1 << 16)
        return
    try:
        while chunk := read1(1 << 16, decode_content=True):
            yield chunk
    except urllib3.exceptions.ReadTimeoutError as e:
        raise requests.Timeout(e) from None
    except urllib3.exceptions.ProtocolError as e:
        raise requests.exceptions.ChunkedEncodingError(e) from None
    except urllib3.exceptions.DecodeError as e:
        raise requests.exceptions.ContentDecodingError(e) from None


def _read_capped(r: requests.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    """The whole body, failing once it passes `max_bytes` or the deadline."""
    length = r.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise _UrlError(f"a {int(length):,}-byte response exceeds the {max_bytes:,}-byte limit", url)
    chunks, total = [], 0
    for chunk in _chunks(r):
        total += len(chunk)
        if total > max_bytes:
            raise _UrlError(f"the response exceeds the {max_bytes:,}-byte limit", url)
        if monotonic() > deadline:
            raise _UrlError("too slow: the download passed its total time limit", url)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise FetchError(f"malformed URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"unsupported URL {url!r} (expected http:// or https://<host>/...)")


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


def fetch_url(url: str, *, session: Optional[requests.Session] = None,
              timeout: tuple[float, float] = TIMEOUT, retries: int = RETRIES,
              backoff: float = BACKOFF, max_bytes: int = MAX_BYTES, total: float = TOTAL) -> bytes:
    """The body at `url`, following one Google Drive confirm page; see TOTAL_TIMEOUT_NOTE."""
    _check_url(url)
    own = session is None
    s = new_session() if session is None else session
    opts = dict(timeout=timeout, retries=retries, backoff=backoff, max_bytes=max_bytes,
                deadline=monotonic() + total)
    try:
        body, ctype = _get(s, url, **opts)
        if not _is_html(body, ctype):
            return body
        confirm = find_confirm_url(body.decode("utf-8", "replace"), url)
        if confirm is not None:
            body, ctype = _get(s, confirm, **opts)
            if not _is_html(body, ctype):
                return body
        raise _UrlError("an HTML page (quota or notice) instead of the list", url)
    finally:
        if own:
            s.close()


class NoMirror(FetchError):
    """Every mirror of one list failed; `failures` says how, mirror by mirror."""

    def __init__(self, filename: str, failures: list[str]) -> None:
        super().__init__(f"could not download {filename} from any mirror ({'; '.join(failures)})")
        self.filename, self.failures = filename, failures


T = TypeVar("T")


def each_list(specs: Sequence[SplitSpec], get: Callable[[SplitSpec], T], hint: str = "") -> dict[str, T]:
    """`get(spec)` for every split, the others tried even when one list has no working mirror,
    so the error names every mirror tried (as many as --help counts); `hint` ends that error."""
    got: dict[str, T] = {}
    failed: list[NoMirror] = []
    for spec in specs:
        try:
            got[spec.name] = get(spec)
        except NoMirror as e:
            failed.append(e)
    if failed:
        first, *rest = failed
        nor = "".join(f"; nor {e.filename} ({'; '.join(e.failures)})" for e in rest)
        raise FetchError(f"{first}{nor}{hint}")
    return got


def _describe(exc: FetchError) -> str:
    return getattr(exc, "reason", str(exc))


def fetch_published(spec: SplitSpec, *, mirrors: Optional[Sequence[str]] = None,
                    session: Optional[requests.Session] = None,
                    warn: Warn = _quiet, cache: Optional[Path] = None,
                    timeout: tuple[float, float] = TIMEOUT, retries: int = RETRIES,
                    backoff: float = BACKOFF) -> tuple[bytes, str]:
    """The published list of a split, verified against its pin: (data, where it came from).

    `mirrors` replace the split's own; `cache` is the folder of verified lists (default:
    <cache dir>/lists); a cached copy that no longer matches the pin is deleted rather than trusted.
    """
    pin = spec.pin
    urls = spec.mirrors if mirrors is None else tuple(mirrors)
    cached = (cache if cache is not None else cache_dir() / "lists") / pin.filename
    try:
        data = cached.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as e:
        warn(f"cannot read the cached {cached}: {e.strerror or e}; downloading it again")
    else:
        if len(data) == pin.size and hashlib.sha256(data).hexdigest() == pin.sha256:
            return data, str(cached)
        warn(f"discarding the cached {cached}: it does not match the published checksum")
        with contextlib.suppress(OSError):  # if it cannot go, the verified copy overwrites it
            cached.unlink()
    if not urls:
        raise FetchError(f"no mirror known for the {spec.name} list")
    failures = []
    for i, url in enumerate(urls):
        try:
            data = fetch_url(url, session=session, timeout=timeout, retries=retries, backoff=backoff,
                             max_bytes=max(MAX_BYTES, 2 * pin.size))
        except FetchError as e:
            failure = _describe(e)
        else:
            digest = hashlib.sha256(data).hexdigest()
            if len(data) == pin.size and digest == pin.sha256:
                _store(cached, data, warn)
                return data, url
            failure = (f"got {len(data):,} bytes with sha256 {digest[:12]}…, expected"
                       f" {pin.size:,} bytes with {pin.sha256[:12]}…")
        failures.append(f"{_host(url)}: {failure}")
        if i + 1 < len(urls):
            warn(f"{pin.filename} from {url}: {failure}; trying the next mirror")
    raise NoMirror(pin.filename, failures)


def _store(path: Path, data: bytes, warn: Warn) -> None:
    """Cache a verified list; a read-only cache only costs a download next time."""
    try:
        atomic_write(path, data)
    except OSError as e:
        warn(f"cannot cache {path}: {e.strerror or e}")


def fetch_lists(dest: Optional[Path], splits: Optional[Sequence[str]] = None, *,
                benchmark: Optional[Benchmark] = None,
                mirrors: Optional[Mapping[str, Sequence[str]]] = None,
                session: Optional[requests.Session] = None, warn: Warn = _quiet,
                cache: Optional[Path] = None, timeout: tuple[float, float] = TIMEOUT,
                retries: int = RETRIES, backoff: float = BACKOFF) -> dict[str, Path]:
    """`ltextract fetch`: download and verify each list (default: every split of the benchmark),
    write it into `dest` (default: the cache)."""
    bench = benchmark or get()
    cache = cache if cache is not None else cache_dir() / "lists"
    own = session is None
    s = new_session() if session is None else session

    def one(spec: SplitSpec) -> Path:
        data, _ = fetch_published(spec, mirrors=None if mirrors is None else mirrors[spec.name],
                                  session=s, warn=warn, cache=cache, timeout=timeout,
                                  retries=retries, backoff=backoff)
        path = (dest if dest is not None else cache) / spec.pin.filename
        if dest is not None or not path.is_file():  # the cache may have refused the copy
            try:
                atomic_write(path, data)
            except OSError as e:
                raise FetchError(f"cannot write {path}: {e.strerror or e}") from None
        return path

    try:
        return each_list([bench.split(n) for n in (bench.split_names if splits is None else splits)], one)
    finally:
        if own:
            s.close()
