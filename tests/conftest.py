"""Shared fixtures.

http_*: a local, scripted HTTP server so the download code is tested without the internet.
"""
from __future__ import annotations

import os
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
import requests
from hypothesis import settings

# CI replays the same fuzz examples every run, so a red CI always means a change broke something;
# local runs keep exploring new examples (and hypothesis keeps the failures it finds).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@dataclass
class Reply:
    """One scripted response. `hang`: accept the request, never answer. `drip`: seconds between
    body bytes. `length=False`: no Content-Length, the body ends when the connection closes.
    `headers` may override Content-Length (with Connection: close, a truncated body)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    drip: float = 0.0
    length: bool = True


class ScriptedServer:
    """Per-path reply scripts: each request takes the next reply, the last one repeats."""

    Reply = Reply  # so tests script replies without importing conftest

    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.log: list[str] = []  # request targets (path and query) in arrival order
        self.counts: defaultdict[str, int] = defaultdict(int)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.scripted = self  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path: str, *replies: Reply) -> str:
        self.scripts[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> int:
        return self.counts[path]

    def take(self, target: str) -> Reply:
        path = target.split("?", 1)[0]
        with self.lock:
            self.log.append(target)
            self.counts[path] += 1
            script = self.scripts.get(path)
            if not script:
                return Reply(404, b"not found\n")
            return script.pop(0) if len(script) > 1 else script[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        srv: ScriptedServer = self.server.scripted  # type: ignore[attr-defined]
        reply = srv.take(self.path)
        if reply.hang:
            srv.stop.wait()
            self.close_connection = True
            return
        self.send_response(reply.status)
        headers = {"Content-Type": "text/plain; charset=utf-8", **reply.headers}
        if reply.length:
            headers.setdefault("Content-Length", str(len(reply.body)))
        else:
            headers["Connection"] = "close"
        if headers.get("Connection") == "close":
            self.close_connection = True
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            if not reply.drip:
                self.wfile.write(reply.body)
                return
            for i in range(len(reply.body)):
                if srv.stop.wait(reply.drip):
                    break
                self.wfile.write(reply.body[i:i + 1])
                self.wfile.flush()
        except OSError:  # the client gave up, as some tests intend
            self.close_connection = True


@pytest.fixture
def http_server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        thread.join(5)


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    """A session that ignores proxy variables, so 127.0.0.1 is always reached directly."""
    with requests.Session() as s:
        s.trust_env = False
        yield s


@pytest.fixture
def http_silent_url() -> Iterator[str]:
    """A port whose kernel completes the TCP handshake but no one ever reads or answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/ImageNet_LT_val.txt"


@pytest.fixture
def http_refused_url() -> Iterator[str]:
    """A port that is bound but not listening: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/ImageNet_LT_val.txt"


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """`datasets`, imported offline with its cache in a temporary folder (it reads both at import)."""
    home = tmp_path_factory.mktemp("hf-home")
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(home),
                      HF_DATASETS_CACHE=str(home / "datasets"))
    import datasets

    datasets.disable_progress_bars()
    return datasets
