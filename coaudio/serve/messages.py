"""What the hub tells clients and the API about a stream, built from its live state: the
spectrogram message, the end-of-stream summary and the /api/streams entry. ``live`` is the hub's
per-stream record (``hub._Live``): its spec, counts, latencies and summed probabilities."""

from __future__ import annotations

import base64

import numpy as np
import torch

from coaudio.online.records import top_list
from coaudio.online.session import p95

MEL_RANGE = {"musicnn": (0.0, 4.5)}  # log-mel values mapped to 0..255 for the page
DEFAULT_MEL_RANGE = (-4.6, 3.4)  # VGGish grid: ln(0.01) is silence


def mel_range(frontend_kind: str) -> tuple[float, float]:
    """The log-mel values drawn as 0 and 255 for this front end."""
    return MEL_RANGE.get(frontend_kind, DEFAULT_MEL_RANGE)


def mel_message(stream: str, frames: torch.Tensor, value_range: tuple[float, float]) -> dict:
    """``(F, mels)`` log-mel frames as 0..255 bytes, base64 (a few KB per second)."""
    low, high = value_range
    scaled = ((frames.numpy() - low) * (255.0 / (high - low))).clip(0, 255).astype(np.uint8)
    return {
        "type": "mel",
        "stream": stream,
        "frames": int(scaled.shape[0]),
        "bands": int(scaled.shape[1]),
        "data": base64.b64encode(scaled.tobytes()).decode("ascii"),
    }


def summarize(live, labels: list[str]) -> dict:
    """The ``end`` message's summary: hops, audio, why it ended, the label of the mean
    probability over its predicted hops, and its latencies."""
    latencies = sorted(live.latencies)
    summary = {
        "stream": live.spec.name,
        "hops": live.hops,
        "audio_s": round(live.audio_s, 4),
        "reason": live.end_reason,
        "label": None,
        "confidence": None,
        "top": [],
        "latency_ms": {
            "mean": round(sum(latencies) / len(latencies), 3) if latencies else 0.0,
            "p95": round(p95(latencies), 3) if latencies else 0.0,
            "max": round(latencies[-1], 3) if latencies else 0.0,
        },
    }
    if live.prob_sum is not None:
        mean = live.prob_sum / live.predicted
        values, indices = mean.topk(min(live.spec.top_k, mean.numel()))
        top = [(int(i), float(v)) for i, v in zip(indices, values)]
        summary.update(label=labels[top[0][0]], confidence=round(top[0][1], 6), top=top_list(top, labels))
    return summary


def describe(live) -> dict:
    """A live stream's /api/streams entry."""
    spec, last = live.spec, live.last or {}
    return {
        "name": spec.name,
        "kind": spec.kind,
        "source": spec.source,
        "sample_rate": spec.sample_rate,
        "channels": spec.channels,
        "started": round(live.started, 3),
        "session": live.session,
        "hops": live.hops,
        "audio_s": round(live.audio_s, 3),
        "label": last.get("label"),
        "confidence": last.get("confidence"),
        "time": last.get("time"),
    }
