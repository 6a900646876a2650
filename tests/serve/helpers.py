"""Shared by the serve tests: a real ``coaudio serve`` process and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

URL_LINE = re.compile(r"coaudio serve: (http://\S+/)")


class Server:
    """A running ``coaudio serve``: its base URL, process and stderr so far."""

    def __init__(self, proc: subprocess.Popen, url: str, lines: list[str]) -> None:
        self.proc, self.url, self._lines = proc, url, lines

    @property
    def ws(self) -> str:
        return "ws" + self.url[len("http") :] + "ws"

    @property
    def stderr(self) -> str:
        return "".join(self._lines)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@contextmanager
def running_server(
    *args, cwd: Path | None = None, env: dict | None = None, timeout: float = 60, port: int = 0
):
    """``coaudio serve ARGS --port PORT`` (any free one by default) until the block ends (then
    Ctrl-C, as a user would)."""
    command = [sys.executable, "-m", "coaudio", "serve", *map(str, args), "--port", str(port)]
    environment = dict(os.environ, **(env or {}))
    proc = subprocess.Popen(command, cwd=cwd, env=environment, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if URL_LINE.search(line):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"coaudio serve did not start: {''.join(lines)}")
    server = Server(proc, URL_LINE.search("".join(lines)).group(1), lines)
    try:
        yield server
    finally:
        if proc.poll() is None:
            server.stop()


def pcm_bytes(audio: np.ndarray, fmt: str) -> bytes:
    """``(N, channels)`` float32 -> interleaved s16le (as a WAV file holds it) or f32le."""
    if fmt == "s16le":
        return (np.clip(audio, -1, 1 - 1 / 32768) * 32768).round().astype("<i2").tobytes()
    return audio.astype("<f4").tobytes()


async def send_stream(
    url: str,
    name: str,
    pcm: bytes,
    sample_rate: int,
    channels: int = 1,
    fmt: str = "s16le",
    seed: int = 0,
    top_k: int = 5,
    extra: dict | None = None,
    headers: dict | None = None,
) -> list[dict]:
    """One client: declare, send ``pcm`` in random chunk sizes (cut anywhere, even inside a
    sample), end; every message the server sent back."""
    import websockets

    rng = np.random.default_rng(seed)
    declaration = {
        "name": name,
        "sample_rate": sample_rate,
        "channels": channels,
        "format": fmt,
        "top_k": top_k,
    }
    declaration.update(extra or {})
    received = []
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        await ws.send(json.dumps(declaration))
        reader = asyncio.create_task(_read_all(ws, received))
        at = 0
        while at < len(pcm):
            size = int(rng.integers(1, 40_000))
            await ws.send(pcm[at : at + size])
            at += size
            if rng.random() < 0.3:
                await asyncio.sleep(float(rng.random()) * 0.01)  # clients interleave at the server
        await ws.send(json.dumps({"end": True}))
        await asyncio.wait_for(reader, 120)
    return received


async def _read_all(ws, received: list) -> None:
    import websockets

    try:
        async for message in ws:
            received.append(json.loads(message))
    except websockets.ConnectionClosed:
        pass


def hops(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("type") == "hop"]


@contextmanager
def inprocess_server(online, limits=None, token=None, history=None, **more):
    """The server in this process (a thread), for limits no command-line option sets; ``more``:
    other :class:`~coaudio.serve.server.ServeOptions` fields."""
    from coaudio.serve.protocol import Limits
    from coaudio.serve.server import ServeOptions, prepare

    options = ServeOptions("127.0.0.1", 0, token, limits or Limits(), **more)
    running = prepare(online, options, history)
    thread = threading.Thread(target=running.server.run, kwargs={"sockets": [running.sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.server.started:
        assert time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.01)
    try:
        yield running
    finally:
        running.server.should_exit = True
        thread.join(30)
        running.hub.stop()
        running.sock.close()


def ws_url(http_url: str, **query) -> str:
    from urllib.parse import urlencode

    base = "ws" + http_url[len("http") :] + "ws"
    return base + ("?" + urlencode(query) if query else "")


def coaudio_serve_exit(*args, timeout: float = 60) -> tuple[int, str]:
    """``coaudio serve ARGS`` that is expected to end by itself: (exit status, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "serve", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stderr


def stream_cli(checkpoint, path, top_k: int = 5) -> subprocess.Popen:
    """``coaudio stream CKPT FILE --jsonl --top-k K`` started in the background: the reference
    a server's hops are compared with."""
    command = [sys.executable, "-m", "coaudio", "stream", str(checkpoint), str(path), "--jsonl"]
    return subprocess.Popen(command + ["--top-k", str(top_k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
