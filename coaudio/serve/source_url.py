"""A URL the server pulls itself (http, https, rtsp): ffmpeg decodes it, a thread pushes it.

ffmpeg does all the network and codec work and writes mono s16le PCM at the model's rate to
its stdout, so the server never resamples and the samples equal what ``ffmpeg -i URL -ac 1
-ar 16000 out.wav`` writes (and what ``coaudio stream out.wav`` then reads).

No ``-re``: a live stream is paced by its sender, and reading it at our own clock would only
add the sender's initial burst as latency and, when the clocks drift, let the sender's
buffer overflow. A file URL is therefore read as fast as the model takes it (the source waits
while the hub's backlog is high) and its end is a drop like any other: the source reconnects.
ffmpeg's own reconnect options are not used either, so that every drop is seen, logged and
counted here.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from urllib.parse import urlsplit, urlunsplit

from coaudio.serve.protocol import Limits, PcmDecoder
from coaudio.serve.source_base import Backoff, PulledSource, SourceError

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "rtsp")
IO_TIMEOUT_S = 15.0  # a read of ffmpeg's output that waits this long is a drop (a stalled server)
BLOCK_BYTES = 32_000  # the most read at once (1 s at 16 kHz); a read returns what has arrived
TAIL_LINES = 20  # of ffmpeg's stderr, kept for the reason of a drop
FFMPEG_HINT = "install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)"
LOG_PREFIX = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")  # ffmpeg's "[http @ 0x55d3...] "


def ffmpeg_command(url: str, sample_rate: int, ffmpeg: str = "ffmpeg") -> list[str]:
    """ffmpeg reading ``url`` and writing its first audio stream to stdout as mono s16le at
    ``sample_rate``; errors only on stderr, never reading stdin (it is not ours)."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        url,
        "-vn",
        "-sn",
        "-dn",
        "-ac",
        "1",
        "-ar",
        str(sample_rate),
        "-acodec",
        "pcm_s16le",
        "-f",
        "s16le",
        "pipe:1",
    ]


def redact(url: str) -> str:
    """``url`` without its password, for logs, watchers and /api/streams."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


class UrlSource(PulledSource):
    """``NAME=URL``: an ffmpeg process per connection, read by the source's thread."""

    kind = "url"

    def __init__(
        self, name: str, url: str, backoff: Backoff | None = None, io_timeout_s: float = IO_TIMEOUT_S
    ) -> None:
        super().__init__(name, redact(url), backoff)
        self.url, self.io_timeout_s = url, io_timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def check(self) -> None:
        if shutil.which("ffmpeg") is None:
            raise SourceError(
                f"source {self.name}: reading {self.where} needs ffmpeg, which is not on PATH: {FFMPEG_HINT}"
            )

    def _interrupt(self) -> None:
        with self._lock:  # after stop() set the event, no new process starts
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    def _pump(self) -> str:
        rate = self._hub.online.frontend.sample_rate
        proc = self._spawn(rate)
        if proc is None:
            return ""
        tail, watchdog = _Tail(proc), _Watchdog(proc, self.io_timeout_s)
        try:
            self._read(proc, watchdog, rate)
        finally:
            watchdog.close()
            if proc.poll() is None:
                proc.kill()  # we stopped reading first (stop(), or a defect): no orphan
            proc.wait()
            tail.join()
            proc.stdout.close()
            proc.stderr.close()
        if watchdog.fired:
            return f"no audio for {self.io_timeout_s:g} s"
        return self._reason(proc.returncode, tail.last())

    def _spawn(self, rate: int) -> subprocess.Popen | None:
        command = ffmpeg_command(self.url, rate, shutil.which("ffmpeg") or "ffmpeg")
        with self._lock:
            if self._stop.is_set():
                return None
            try:
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    bufsize=0,  # a read returns what has arrived, not a full block
                    start_new_session=True,  # Ctrl-C is the server's to handle, not ffmpeg's
                )
            except OSError as exc:  # ffmpeg removed while the server runs
                raise SourceError(f"cannot run ffmpeg: {exc}; {FFMPEG_HINT}") from None
            return self._proc

    def _read(self, proc: subprocess.Popen, watchdog: _Watchdog, rate: int) -> None:
        session = self._open_session(rate, "s16le")
        decoder = PcmDecoder(session.spec, Limits())  # decodes as coaudio stream reads a WAV
        while True:
            watchdog.since = time.monotonic()
            data = proc.stdout.read(BLOCK_BYTES)
            watchdog.since = None
            if not data or not session.push(decoder.decode(data)):
                return

    def _reason(self, status: int, last: str) -> str:
        """Why ffmpeg ended, in its own words where it gave any (without the password)."""
        last = last.removeprefix(f"{self.url}: ").replace(self.url, self.where)  # logs name the URL already
        what = last or ("the stream ended" if status == 0 else "ffmpeg failed")
        if status < 0:
            return f"{what} (ffmpeg was killed by signal {-status})"
        return what if status == 0 else f"{what} (ffmpeg exit status {status})"


class _Tail:
    """A thread keeping the last lines ffmpeg writes to stderr (a full pipe would stall it)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self._thread = threading.Thread(
            target=self._read, args=(proc.stderr,), name="coaudio-ffmpeg-stderr", daemon=True
        )
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            line = LOG_PREFIX.sub("", raw.decode("utf-8", "replace").strip())
            if line:
                self.lines.append(line)

    def join(self) -> None:
        self._thread.join(5.0)

    def last(self) -> str:
        return self.lines[-1] if self.lines else ""


class _Watchdog:
    """Kills ffmpeg when a read of its output has waited longer than ``timeout_s``: a server
    that stops sending, a host that never answers (any protocol, any ffmpeg version)."""

    def __init__(self, proc: subprocess.Popen, timeout_s: float) -> None:
        self.proc, self.timeout_s = proc, timeout_s
        self.since: float | None = None  # when the pending read began; None between reads
        self.fired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="coaudio-ffmpeg-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout_s / 4)):
            since = self.since
            if since is not None and time.monotonic() - since > self.timeout_s:
                self.fired = True
                self.proc.kill()
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join()
