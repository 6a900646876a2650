"""Shared by the pulled-source tests: a real HTTP audio server, a real /ws watcher, ffmpeg.

(No tests here; the name keeps the file with the tests that use it.)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")


def ffmpeg(*args) -> None:
    subprocess.run(
        [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True
    )


def decode_16k(path: Path, out: Path) -> Path:
    """What ffmpeg decodes from ``path`` at 16 kHz mono, as a 16-bit WAV."""
    ffmpeg("-i", path, "-ac", 1, "-ar", 16_000, "-c:a", "pcm_s16le", out)
    return out


@dataclass
class Route:
    """What the HTTP server answers for one path."""

    data: bytes
    gate: threading.Event = field(default_factory=threading.Event)  # answers wait until the test opens it
    cut_first: int | None = None  # the first answer sends this many bytes, then the connection is cut
    answers: int = 1_000  # after this many, 404 (a radio that is gone)
    hang_after: int | None = None  # bytes after which every answer stops sending (and keeps the connection)
    requests: int = 0

    def body(self, answer: int) -> tuple[bytes, bool]:
        """(the bytes of answer number ``answer``, whether it ends by cutting the connection)"""
        if self.cut_first is not None and answer == 1:
            return self.data[: self.cut_first], True
        if self.hang_after is not None:
            return self.data[: self.hang_after], False
        return self.data, False


class AudioHttp:
    """A real HTTP server on 127.0.0.1 (a thread) answering GET with audio, as a radio would."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.closing = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self) -> None:
        self.closing.set()
        for route in self.routes.values():
            route.gate.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> AudioHttp:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = owner.routes.get(self.path)
                if route is None or route.requests >= route.answers:
                    self.send_error(404)
                    return
                route.requests += 1
                answer = route.requests
                route.gate.wait(60)
                data, cut = route.body(answer)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if not cut and route.hang_after is None:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                if cut:
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif route.hang_after is not None:
                    owner.closing.wait(60)

            def log_message(self, *args) -> None:
                pass

        return Handler


def closed_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Watcher:
    """A real /ws client watching one stream name; its messages (less spectrogram frames)
    collect in :attr:`messages` on a thread."""

    def __init__(self, ws_url: str, name: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None).__enter__()  # closed by close()
        self.ws.send(json.dumps({"watch": name}))
        first = json.loads(self.ws.recv(timeout=10))
        assert first["type"] == "watching" and first["stream"] == name, first
        self.messages: list[dict] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for text in self.ws:
                message = json.loads(text)
                if message["type"] != "mel":
                    self.messages.append(message)
        except ConnectionClosed:
            pass

    def wait_for(self, done, timeout: float) -> list[dict]:
        """The messages so far once ``done(messages)`` holds; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not done(list(self.messages)):
            assert time.monotonic() < deadline, f"timed out; got {_kinds(self.messages)}"
            time.sleep(0.02)
        return list(self.messages)

    def close(self) -> None:
        self.ws.close()
        self._thread.join(10)


def count(messages: list[dict], kind: str) -> int:
    return sum(m["type"] == kind for m in messages)


def sessions(messages: list[dict]) -> list[list[dict]]:
    """The hops of each session that ended, in order (each session ends with its "end")."""
    out, current = [], []
    for message in messages:
        if message["type"] == "hop":
            current.append(message)
        elif message["type"] == "end":
            out.append(current)
            current = []
    return out


def ffmpeg_children(parent: int | None = None) -> list[tuple[int, str]]:
    """(pid, state) of every ffmpeg process whose parent is ``parent`` (default: this one)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm = (stat.parent / "comm").read_text().strip()
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue  # it ended while we looked
        if comm == "ffmpeg" and int(ppid) == parent:
            found.append((int(stat.parent.name), state))
    return found


def ffmpeg_reading(text: str) -> list[int]:
    """Pids of ffmpeg processes whose command line contains ``text`` (any parent)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"ffmpeg") and any(text.encode() in a for a in args):
            found.append(int(cmdline.parent.name))
    return found


def _kinds(messages: list[dict]) -> list[str]:
    return [m["type"] for m in messages]
