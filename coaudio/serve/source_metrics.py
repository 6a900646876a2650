"""What ``/health`` and ``/metrics`` say about the streams the server pulls itself (``--source``).

Every :class:`~coaudio.serve.source_base.PulledSource` keeps a :class:`SourceState`, changed
by its supervisor thread as it goes round::

    connecting -> streaming -> (drop) backing_off -> connecting -> ...
         \\-----> (fails) ------------/

    connecting   ffmpeg or the device is being opened, its first audio awaited, or the stream's
                 name waited for (a client holds it)
    streaming    a session is open: audio flows into the hub
    backing_off  the last connection dropped or never delivered; the next try is in retry_in_s
    failed       the source's thread ended on a defect: it will not try again (the log says why)
    stopped      the server stopped it (shutdown)

A started source is tracked in its hub's ``sources`` (:func:`track`), so ``/health`` finds the
sources of the hub it serves without the server handing them over, and one collector per hub
adds them to
``/metrics``: ``coaudio_source_state{source,state}`` (1 for the current state, 0 for the
others: Prometheus' usual form of an enum) and ``coaudio_source_drops_total{source}``.
"""

from __future__ import annotations

import threading
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

STATES = ("connecting", "streaming", "backing_off", "failed", "stopped")
GRACE_S = 15.0  # a first connection may take this long (ffmpeg probing a slow host) before it is a fault


class SourceState:
    """One source's state, its history of drops and the time it was down; thread-safe (the
    source's thread writes, request handlers and the metrics collector read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = "connecting"
        self._since, self._since_mono = time.time(), time.monotonic()
        self.sessions = 0  # connections that delivered audio
        self.drops = 0  # connections that ended or failed (each reported as a drop)
        self.reconnects = 0  # tries after a drop
        self.last_error: str | None = None
        self._last_error_at: float | None = None
        self._retry_at: float | None = None  # monotonic time of the next try, while backing off
        self._down_s = 0.0  # seconds not streaming, up to the current state
        self._failing = False  # dropped since it last streamed: no longer a first connection

    # ---- the source's thread --------------------------------------------------------------

    def connecting(self, retry: bool = False) -> None:
        with self._lock:
            if retry:
                self.reconnects += 1
            self._enter("connecting")

    def waiting(self, why: str) -> None:
        """Still connecting, for a reason worth showing (the name is held by a client)."""
        with self._lock:
            self._error(why)

    def streaming(self) -> None:
        with self._lock:
            self.sessions += 1
            self._failing = False
            self._enter("streaming")

    def backing_off(self, reason: str, delay_s: float) -> None:
        with self._lock:
            self.drops += 1
            self._failing = True
            self._error(reason)
            self._enter("backing_off")
            self._retry_at = self._since_mono + delay_s

    def failed(self, reason: str) -> None:
        with self._lock:
            self._error(reason)
            self._enter("failed")

    def stopped(self) -> None:
        with self._lock:
            self._enter("stopped")

    # ---- readers ------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Streaming, or on its first try at connecting and not for long."""
        with self._lock:
            if self.state == "streaming":
                return True
            first_try = self.state == "connecting" and not self._failing
            return first_try and time.monotonic() - self._since_mono < GRACE_S

    def snapshot(self) -> dict:
        """The state as ``/health`` shows it (times as Unix seconds, like ``/api/streams``)."""
        with self._lock:
            now = time.monotonic()
            down = self._down_s + (now - self._since_mono if self.state != "streaming" else 0.0)
            retry = None if self._retry_at is None else round(max(0.0, self._retry_at - now), 3)
            return {
                "state": self.state,
                "since": round(self._since, 3),
                "sessions": self.sessions,
                "drops": self.drops,
                "reconnects": self.reconnects,
                "last_error": self.last_error,
                "last_error_at": None if self._last_error_at is None else round(self._last_error_at, 3),
                "retry_in_s": retry,
                "down_s": round(down, 3),
            }

    # ---- under the lock -----------------------------------------------------------------------

    def _enter(self, state: str) -> None:
        now = time.monotonic()
        if self.state != "streaming":
            self._down_s += now - self._since_mono
        self.state, self._since, self._since_mono = state, time.time(), now
        self._retry_at = None

    def _error(self, why: str) -> None:
        self.last_error, self._last_error_at = why, time.time()


# ---- the sources of each hub --------------------------------------------------------------------

_lock = threading.Lock()  # guards every hub's ``sources``


def track(hub, source) -> None:
    """``source`` pulls into ``hub`` from now on: ``/health`` and ``/metrics`` report it."""
    with _lock:
        if hub.sources is None:  # the hub's first source: its collector, registered once
            hub.sources = {}
            hub.metrics.registry.register(_Collector(hub.sources))
        hub.sources[source.name] = source


def untrack(hub, source) -> None:
    with _lock:
        if hub.sources and hub.sources.get(source.name) is source:
            del hub.sources[source.name]


def sources_of(hub) -> list:
    """The sources pulling into ``hub``, by name."""
    with _lock:
        return sorted((hub.sources or {}).values(), key=lambda s: s.name)


def health(hub) -> tuple[bool, dict]:
    """(whether every source is healthy, ``{name: {"kind", "source", "state", ...}}``)."""
    sources = sources_of(hub)
    report = {s.name: {"kind": s.kind, "source": s.where, **s.state.snapshot()} for s in sources}
    return all(s.state.healthy() for s in sources), report


class _Collector:
    """Adds the sources' states and drops to a server's ``/metrics``, read when it is scraped."""

    def __init__(self, sources: dict) -> None:
        self.sources = sources

    def collect(self):
        with _lock:
            sources = sorted(self.sources.values(), key=lambda s: s.name)
        state = GaugeMetricFamily(
            "coaudio_source_state", "A pulled source's state (1: the current one)", labels=["source", "state"]
        )
        drops = CounterMetricFamily(
            "coaudio_source_drops", "Connections of a pulled source that ended or failed", labels=["source"]
        )
        for source in sources:
            snapshot = source.state.snapshot()
            for name in STATES:
                state.add_metric([source.name, name], float(snapshot["state"] == name))
            drops.add_metric([source.name], snapshot["drops"])
        yield state
        yield drops
