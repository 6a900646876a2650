"""One audio stream through the model: push samples, get a prediction per completed hop.

::

    session = Session(online, sample_rate)
    for block in blocks:              # any sizes, mono float32 at ``sample_rate``
        for hop in session.push(block):
            print(hop.index, hop.end_s, online.labels[hop.top()[0][0]])
    session.flush()                   # end of stream: the resampler's last samples

A session is one stream of the per-hop :class:`~coaudio.online.engine.Engine` plus running
statistics. Each hop is streaming log-mel -> patch -> (learned embedder inside the model, or
VGGish) -> one continual step. Hop ``k``'s prediction equals the batch model on the window of the
``min(k + 1, n)`` newest patches of the whole signal (``forward(..., start=k - len + 1)``).

Warm-up: before ``n`` tokens have arrived the window is shorter than the model's. With
``full_window_only`` those hops carry no prediction;
otherwise they carry the exact prediction on the shorter window, flagged ``warmup``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from coaudio.online.engine import Engine, Hop
from coaudio.online.model import OnlineModel

__all__ = ["Hop", "Session", "StreamStats", "p95"]


def p95(ascending: list[float]) -> float:
    """95th percentile (nearest rank) of a non-empty ascending list."""
    return ascending[min(len(ascending) - 1, int(0.95 * len(ascending)))]


@dataclass
class StreamStats:
    """What a stream cost: hop latencies and processing time against audio time."""

    audio_s: float = 0.0  # audio pushed so far
    processing_s: float = 0.0  # wall time spent inside push/flush
    latencies_ms: list[float] = field(default_factory=list)
    prob_sum: Tensor | None = None  # sum of the probabilities of hops with a prediction
    predicted_hops: int = 0

    @property
    def hops(self) -> int:
        return len(self.latencies_ms)

    @property
    def real_time_factor(self) -> float:
        """Processing time / audio time (< 1: faster than real time)."""
        return self.processing_s / self.audio_s if self.audio_s else 0.0

    def latency_summary(self) -> dict:
        values = sorted(self.latencies_ms)
        if not values:
            return {"mean_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0}
        return {"mean_ms": statistics.fmean(values), "p95_ms": p95(values), "max_ms": values[-1]}

    def mean_probs(self) -> Tensor | None:
        """Mean probability over all predicted hops: the stream's clip-level prediction."""
        return None if self.prob_sum is None else self.prob_sum / self.predicted_hops


class Session:
    """The streaming state of one audio stream (see the module docstring)."""

    def __init__(
        self, online: OnlineModel, sample_rate: int, full_window_only: bool = False, kernel: str = "auto"
    ) -> None:
        self.online, self.sample_rate = online, sample_rate
        self._engine = Engine(online, full_window_only=full_window_only, kernel=kernel)
        self._engine.open(0, sample_rate)
        self.stats = StreamStats()

    def push(self, samples: np.ndarray) -> list[Hop]:
        """``samples``: ``(N,)`` mono float32 at ``sample_rate``. Returns the hops they completed."""
        started = time.perf_counter()
        self.stats.audio_s += len(samples) / self.sample_rate
        return self._record(self._engine.push(0, samples), started)

    def flush(self) -> list[Hop]:
        """End of stream: hops completed by the samples the resampler held back."""
        started = time.perf_counter()
        return self._record(self._engine.close(0), started)

    def _record(self, hops: list[Hop], started: float) -> list[Hop]:
        for hop in hops:
            self.stats.latencies_ms.append(hop.latency_ms)
            if hop.probs is not None:
                stats = self.stats
                stats.prob_sum = hop.probs.clone() if stats.prob_sum is None else stats.prob_sum + hop.probs
                stats.predicted_hops += 1
        self.stats.processing_s += time.perf_counter() - started
        return hops
