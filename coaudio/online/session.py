"""One audio stream through the model: push samples, get a prediction per completed hop.

::

    session = online.session(sample_rate)
    for block in blocks:              # any sizes, mono float32 at ``sample_rate``
        for hop in session.push(block):
            print(hop.index, hop.end_s, online.labels[hop.top()[0][0]])
    session.flush()                   # end of stream: the resampler's last samples

Each hop is streaming log-mel -> patch -> (learned embedder inside the model, or VGGish) ->
one continual step. Hop ``k``'s prediction equals the batch model on the window of the
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
import torch
from torch import Tensor

from coaudio.features.stream import StreamingLogMel
from coaudio.online.model import OnlineModel, probabilities


@dataclass(frozen=True)
class Hop:
    index: int  # 0, 1, ... in stream order
    start_s: float  # stream time where the prediction's window starts
    end_s: float  # stream time where this hop's audio ends
    probs: Tensor | None  # (C,) class probabilities; None for a warm-up hop without prediction
    logits: Tensor | None  # (C,)
    token: Tensor  # the model input of this hop: (96, 64) patch or (token_dim,) embedding
    warmup: bool  # the window holds fewer than n tokens
    latency_ms: float  # from the push that completed this hop to its prediction
    step_ms: float  # of which the model's step (learned embedder + encoder + head)

    def top(self, k: int = 1) -> list[tuple[int, float]]:
        """The ``k`` most probable classes as (index, probability), best first."""
        if self.probs is None:
            return []
        values, indices = self.probs.topk(min(k, self.probs.numel()))
        return [(int(i), float(v)) for i, v in zip(indices, values)]


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

    def __init__(self, online: OnlineModel, sample_rate: int, full_window_only: bool = False,
                 kernel: str = "auto") -> None:
        self.online, self.sample_rate = online, sample_rate
        self.full_window_only, self.kernel = full_window_only, kernel
        self._extractor = StreamingLogMel(sample_rate, hop_frames=online.frontend.hop_frames)
        self._state = online.model.init_state(1)
        self._next_hop = 0
        self.stats = StreamStats()

    def push(self, samples: np.ndarray) -> list[Hop]:
        """``samples``: ``(N,)`` mono float32 at ``sample_rate``. Returns the hops they completed."""
        started = time.perf_counter()
        self.stats.audio_s += len(samples) / self.sample_rate
        _, patches = self._extractor.push(samples)
        return self._hops(patches, started)

    def flush(self) -> list[Hop]:
        """End of stream: hops completed by the samples the resampler held back."""
        started = time.perf_counter()
        _, patches = self._extractor.flush()
        return self._hops(patches, started)

    def _hops(self, patches: Tensor, started: float) -> list[Hop]:
        hops = [self._step(patch, started) for patch in patches]
        self.stats.processing_s += time.perf_counter() - started
        return hops

    def _step(self, patch: Tensor, started: float) -> Hop:
        online, index = self.online, self._next_hop
        warmup = index + 1 < online.window
        with torch.inference_mode():
            token = patch if online.embed is None else online.embed(patch[None])[0]
            step_started = time.perf_counter()
            logits, self._state = online.model.step(
                token[None], self._state, emit_partial=not self.full_window_only, kernel=self.kernel)
            step_ms = (time.perf_counter() - step_started) * 1e3
        probs = None
        if logits is not None:
            logits = logits[0]
            probs = probabilities(logits)
            self.stats.prob_sum = probs.clone() if self.stats.prob_sum is None else self.stats.prob_sum + probs
            self.stats.predicted_hops += 1
        latency_ms = (time.perf_counter() - started) * 1e3
        self.stats.latencies_ms.append(latency_ms)
        self._next_hop += 1
        frontend = online.frontend
        return Hop(index, frontend.window_start_s(index, online.window), frontend.hop_end_s(index),
                   probs, logits, token, warmup, latency_ms, step_ms)
