"""What every stream ``coaudio serve`` pulls itself shares: hub sessions, drops, back-off.

A pulled source (a URL through ffmpeg, an input device) has no client. One supervisor thread
per source connects, pushes the audio into the hub as it arrives and, when the stream drops
(the far end closes it, the network fails, the device goes away), ends that session, tells the
stream's watchers why and connects again after an exponential back-off::

    connect -> audio -> ... -> drop -> end the session -> {"type": "drop"} -> wait -> connect

Every connection that delivers audio is a session of its own in the hub under the source's
name (its own hops, summary and history entry); one that delivers none leaves no trace but the
drop. :meth:`PulledSource.stop` ends all of it promptly, even in the middle of a wait.

Each source keeps its state (connecting, streaming, backing off...) for ``/health`` and
``/metrics``: :mod:`coaudio.serve.source_metrics`.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from coaudio.serve import source_metrics
from coaudio.serve.protocol import ProtocolError, StreamSpec
from coaudio.serve.server import ServeError
from coaudio.serve.source_metrics import SourceState

log = logging.getLogger(__name__)

BACKOFF_ENV = "COAUDIO_SOURCE_BACKOFF_S"  # the first wait after a drop (tests make it short)
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
STABLE_S = 60.0  # a session this long resets the back-off: the drops before it are history
JITTER = 0.2  # each wait is shortened by up to this fraction, so sources that drop together spread out
MAX_BACKLOG_S = 1.0  # queued audio at which a source waits for the model (a file is not paced)
POLL_S = 0.02  # how often waits for the model or for the stream's name look at stop()
NAME_WARN_S = 1.0  # a stream still not opened after this long is worth a warning (the server is full)
END_WAIT_S = 5.0  # at a drop: the longest wait for the hub to send the session's end


class SourceError(ServeError):
    """A source is given wrongly or cannot work at all; the message says why and what to do.

    A :class:`~coaudio.serve.server.ServeError`, so ``coaudio serve`` reports one raised while
    the server starts as an error, not a traceback."""


@dataclass
class Backoff:
    """Waits between tries: ``first_s``, doubling up to ``max_s``, each shortened by a random
    fraction up to ``jitter``; a session that streamed ``stable_s`` starts again from ``first_s``."""

    first_s: float = FIRST_DELAY_S
    max_s: float = MAX_DELAY_S
    stable_s: float = STABLE_S
    jitter: float = JITTER
    failures: int = 0  # drops since the last stable session
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_env(cls) -> Backoff:
        """The default back-off, or one starting at ``$COAUDIO_SOURCE_BACKOFF_S`` seconds."""
        text = os.environ.get(BACKOFF_ENV, "").strip()
        if not text:
            return cls()
        try:
            first = float(text)
        except ValueError:
            first = math.nan
        if not (math.isfinite(first) and first > 0):
            raise SourceError(f"{BACKOFF_ENV} must be a positive number of seconds, got {text!r}")
        return cls(first_s=first, max_s=max(first, MAX_DELAY_S))

    def next(self, ran_s: float) -> float:
        """Seconds to wait after a connection that streamed for ``ran_s`` seconds."""
        if ran_s >= self.stable_s:
            self.failures = 0
        delay = min(self.max_s, self.first_s * 2.0 ** min(self.failures, 64))  # 2.0**1024 overflows
        self.failures += 1
        return delay * (1.0 - self.jitter * self.rng.random())


class _Sink:
    """The results of a pulled stream: no client to send them to (watchers get them from the
    hub); only its end matters, which says that the hub has let the name go."""

    def __init__(self) -> None:
        self.hops = 0
        self.error: str | None = None  # why the hub closed the stream on its own
        self.ended = threading.Event()

    def deliver(self, messages: list[dict]) -> None:  # the hub's thread: count, never wait
        for message in messages:
            if message["type"] == "hop":
                self.hops += 1
            elif message["type"] in ("end", "error"):
                self.error = message.get("error")
                self.ended.set()


class HubSession:
    """One connection's stream in the hub, opened with its first audio."""

    def __init__(self, hub, spec: StreamSpec, stop: threading.Event, state: SourceState) -> None:
        self.hub, self.spec, self.stop, self.state = hub, spec, stop, state
        self.sink = _Sink()
        self.stream: int | None = None
        self.opened_at: float | None = None  # time.monotonic() of the first audio

    @property
    def ran_s(self) -> float:
        return 0.0 if self.opened_at is None else time.monotonic() - self.opened_at

    def push(self, samples: np.ndarray) -> bool:
        """Queue ``(N,)`` mono float32 samples, then wait while the model is behind (a file
        arrives faster than real time). False once the source is stopping; :class:`SourceError`
        when the hub has closed the stream (a failed batch): the connection is dropped and a
        new one makes a new session, rather than audio going nowhere."""
        if not len(samples):
            return not self.stop.is_set()
        if self.stream is None and not self._open():
            return False
        if self.sink.ended.is_set():
            raise SourceError(f"the server closed the stream ({self.sink.error or 'ended'})")
        self.hub.push(self.stream, samples)
        while self.hub.backlog_s(self.stream) > MAX_BACKLOG_S:
            if self.stop.wait(POLL_S):
                return False
        return not self.stop.is_set()

    def _open(self) -> bool:
        """Open the stream; while the name is taken (the last session is still flushed) or the
        server is full, wait."""
        since, warned = time.monotonic(), False
        while not self.stop.is_set():
            try:
                self.stream = self.hub.open(self.spec, self.sink)
            except ProtocolError as exc:
                if not warned and time.monotonic() - since > NAME_WARN_S:
                    log.warning("source %s: waiting to open its stream: %s", self.spec.name, exc)
                    self.state.waiting(f"waiting to open its stream: {exc}")
                    warned = True
                self.stop.wait(POLL_S * 5)
                continue
            self.opened_at = time.monotonic()
            self.state.streaming()
            log.info("source %s: streaming from %s", self.spec.name, self.spec.source)
            return True
        return False

    def end(self, wait: bool, reason: str = "source ended") -> None:
        """End the stream (the hub flushes it and sends its summary); with ``wait``, return
        once the hub has sent its end, so that watchers get it before the drop and the name
        is free for the next session."""
        if self.stream is None:
            return
        self.hub.end(self.stream, reason)
        deadline = time.monotonic() + END_WAIT_S
        while wait and not self.sink.ended.wait(POLL_S) and time.monotonic() < deadline:
            if self.stop.is_set():
                return


class PulledSource:
    """A stream the server pulls itself. The server calls :meth:`start` and :meth:`stop`;
    a subclass says how to connect and pump (:meth:`check`, :meth:`_pump`, :meth:`_interrupt`)."""

    kind = ""  # StreamSpec.kind: "url" or "mic"

    def __init__(self, name: str, where: str, backoff: Backoff | None = None) -> None:
        self.name = name
        self.where = where  # what the source reads, fit for logs and /api/streams
        self.backoff = backoff or Backoff.from_env()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hub = None
        self._session: HubSession | None = None
        self.state = SourceState()

    def start(self, hub) -> None:
        """Check that the source can work at all (:class:`SourceError` if not), then pull on a
        thread of its own until :meth:`stop`."""
        self.check()
        self._hub = hub
        hub.reserve(self.name)  # no client may take the name, even while the source is down
        source_metrics.track(hub, self)
        self._thread = threading.Thread(
            target=self._supervise, name=f"coaudio-source-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the current session (its last hops are flushed) and every thread and process."""
        self._stop.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("source %s did not stop within %g s", self.name, timeout)
        self.state.stopped()
        if self._hub is not None:
            source_metrics.untrack(self._hub, self)

    # ---- for subclasses ------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`SourceError` when the source cannot work at all (nothing to retry)."""

    def _pump(self) -> str:
        """Connect, open the session (:meth:`_open_session`), push audio until the stream ends
        or :meth:`stop`; why it ended. Raise :class:`SourceError` when connecting fails."""
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Called by :meth:`stop` on another thread: wake a :meth:`_pump` that waits for data."""

    def _open_session(self, sample_rate: int, fmt: str) -> HubSession:
        """The hub session of this connection (opened with its first audio)."""
        spec = StreamSpec(self.name, sample_rate, 1, fmt, kind=self.kind, source=self.where)
        self._session = HubSession(self._hub, spec, self._stop, self.state)
        return self._session

    # ---- the supervisor thread -----------------------------------------------------------

    def _supervise(self) -> None:
        """:meth:`_run`; a defect that escapes it (not a drop: those are caught) must not end the
        source silently: its state says ``failed`` in /health and /metrics."""
        try:
            self._run()
        except Exception as exc:
            log.exception("source %s stopped for good on an internal error", self.name)
            self.state.failed(f"internal error: {exc!r}")

    def _run(self) -> None:
        while True:
            self._session = None
            reason = self._attempt()
            session, stopping = self._session, self._stop.is_set()
            if session is not None:
                why = "server stopping" if stopping else f"source dropped: {reason}"
                session.end(wait=not stopping, reason=why)
            if stopping:
                return
            delay = self.backoff.next(session.ran_s if session is not None else 0.0)
            self._report(reason, delay)
            if self._stop.wait(delay):
                return
            self._hub.metrics.reconnects.labels(self.name).inc()
            self.state.connecting(retry=True)

    def _attempt(self) -> str:
        try:
            return self._pump()
        except SourceError as exc:
            return str(exc)
        except Exception as exc:  # a defect must not end the source for good: it is a drop too
            log.exception("source %s failed", self.name)
            return f"internal error: {exc}"

    def _report(self, reason: str, delay: float) -> None:
        log.warning(
            "source %s (%s) dropped: %s; trying again in %.1f s", self.name, self.where, reason, delay
        )
        self._hub.metrics.errors.labels("source").inc()
        self.state.backing_off(reason, delay)
        message = {"type": "drop", "stream": self.name, "reason": reason, "retry_in_s": round(delay, 3)}
        self._hub.announce(self.name, message)
