"""What ``/metrics`` and ``/health`` report: streams, hops/s, hop latency percentiles, drops.

Counters and gauges are prometheus_client's, in a registry of this server's own (several
servers in one process, as in the tests, do not share numbers). Latency percentiles are
computed over the hops of the last :data:`WINDOW_S` seconds rather than a fixed-bucket
histogram, so p95 is the real p95 and not a bucket edge; a histogram is exported too, for
Prometheus' own aggregation across servers.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

WINDOW_S = 10.0  # hops/s and latency percentiles cover this many recent seconds
QUANTILES = (0.5, 0.95, 0.99)
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000)


class ServerMetrics:
    """Thread-safe: the hub's worker, the event loop and source threads all report here."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int, float]] = deque()  # (time, hops, latency ms)
        self.started = time.time()
        self.dropped_total = 0
        r = self.registry
        self.live = Gauge("coaudio_streams", "Live streams", ["kind"], registry=r)
        self.opened = Counter("coaudio_streams_opened", "Streams opened", ["kind"], registry=r)
        self.hops_total = Counter("coaudio_hops", "Hops classified", registry=r)
        self.audio_total = Counter("coaudio_audio_seconds", "Seconds of audio classified", registry=r)
        self.dropped = Counter(
            "coaudio_results_dropped", "Results not sent because a client was too slow", registry=r
        )
        self.errors = Counter("coaudio_stream_errors", "Streams closed with an error", ["reason"], registry=r)
        self.reconnects = Counter(
            "coaudio_source_reconnects", "Pulled sources reconnected after a drop", ["source"], registry=r
        )
        self.latency = Histogram(
            "coaudio_hop_latency_ms",
            "From the audio's arrival to its hop's result",
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        r.register(_Recent(self))

    def results_dropped(self, count: int = 1) -> None:
        self.dropped.inc(count)
        with self._lock:
            self.dropped_total += count

    def streams_opened(self, kind: str) -> None:
        self.opened.labels(kind).inc()
        self.live.labels(kind).inc()

    def streams_closed(self, kind: str) -> None:
        self.live.labels(kind).dec()

    def hops(self, count: int, latency_ms: float, block, sample_rate: int) -> None:
        """``count`` hops of one stream made from one block (None: no new audio)."""
        self.hops_many([(count, latency_ms, 0.0 if block is None else len(block) / sample_rate)])

    def hops_many(self, tallies: list[tuple[int, float, float]]) -> None:
        """A round's hops, per stream ``(hops, latency ms, seconds of audio)``: one update of
        each counter and one lock for the whole round (the hub's worker calls it per round)."""
        audio_s = sum(t[2] for t in tallies)
        if audio_s:
            self.audio_total.inc(audio_s)
        hops = sum(t[0] for t in tallies)
        if not hops:
            return
        self.hops_total.inc(hops)
        for count, latency_ms, _ in tallies:
            for _ in range(count):
                self.latency.observe(latency_ms)
        now = time.monotonic()
        with self._lock:
            self._recent.extend((now, count, latency_ms) for count, latency_ms, _ in tallies if count)
            self._forget(now)

    def recent(self) -> dict:
        """hops/s and latency percentiles over the last WINDOW_S seconds."""
        now = time.monotonic()
        with self._lock:
            self._forget(now)
            entries = list(self._recent)
        hops = sum(c for _, c, _ in entries)
        span = min(WINDOW_S, max(now - self._started_monotonic(), 1e-9))
        out = {"hops_per_s": hops / span}
        if entries:
            latencies = np.repeat([lat for _, _, lat in entries], [c for _, c, _ in entries])
            for q in QUANTILES:
                out[f"p{round(q * 100)}_ms"] = float(np.quantile(latencies, q, method="inverted_cdf"))
        return out

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def _forget(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - WINDOW_S:
            self._recent.popleft()

    def _started_monotonic(self) -> float:
        return time.monotonic() - (time.time() - self.started)


class _Recent:
    """A collector: the windowed numbers, computed when /metrics is read."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self):
        recent = self.metrics.recent()
        rate = GaugeMetricFamily("coaudio_hops_per_second", f"Hops per second over the last {WINDOW_S:g} s")
        rate.add_metric([], recent["hops_per_s"])
        yield rate
        quantiles = GaugeMetricFamily(
            "coaudio_hop_latency_recent_ms",
            f"Hop latency percentiles over the last {WINDOW_S:g} s",
            labels=["quantile"],
        )
        for q in QUANTILES:
            key = f"p{round(q * 100)}_ms"
            if key in recent:
                quantiles.add_metric([f"{q:g}"], recent[key])
        yield quantiles
