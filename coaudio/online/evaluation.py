"""Hop-by-hop evaluation: every clip streamed through the per-hop engine, as ``coaudio stream``
would, giving the accuracy of the current prediction against elapsed audio.

Each clip's audio is decoded block by block (hop-sized blocks, as ``coaudio stream`` reads a
file), turned into log-mel patches by the streaming extractor and stepped one hop at a time on
one thread. For the first clips every hop is also recomputed by the regular model on the same
window, which checks continual == regular and times both; FLOPs per prediction are counted for
both.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from coaudio.audio import stream_audio
from coaudio.continual.flops import counted_flops
from coaudio.features.frontend import FrontendConfig
from coaudio.features.logmel import N_MELS, PATCH_FRAMES
from coaudio.models.classifier import AudioClassifier
from coaudio.online.model import OnlineModel
from coaudio.online.session import Session
from coaudio.threads import per_hop


@dataclass
class StreamingReport:
    hop_s: float
    curve: list[dict] = field(default_factory=list)  # {"hop", "time_s" (hop end), "accuracy", "clips"}
    max_logit_diff: float | None = 0.0  # None (and regular_us None): no hop was compared
    compared_hops: int = 0
    continual_us: float = 0.0  # median per hop: embed + step (a token function excluded)
    regular_us: float | None = 0.0  # median per hop: embed the window + forward (the same)
    continual_flops: int = 0
    regular_flops: int = 0


def streaming_report(
    model: AudioClassifier,
    paths: list[str],
    labels: list[int],
    frontend: FrontendConfig,
    compare_clips: int = 3,
    embed=None,
) -> StreamingReport:
    """``embed``: for a model on precomputed tokens, the function that turns streamed patches
    ``(1, 96, 64)`` into tokens (VGGish); its cost is not part of the step timings or FLOPs."""
    window = model.cfg.encoder.window
    report = StreamingReport(hop_s=frontend.hop_s)
    hits: dict[int, list[bool]] = {}
    step_us, regular_us = [], []
    model.eval()
    with torch.inference_mode(), per_hop():  # as coaudio stream runs: one thread (coaudio.threads)
        for index, (path, label) in enumerate(zip(paths, labels)):
            compare = index < compare_clips
            for hop, logits, history, dt in _stream_clip(model, path, frontend, window, embed):
                step_us.append(dt)
                hits.setdefault(hop, []).append(int(logits.argmax()) == label)
                if compare:
                    start = time.perf_counter()
                    regular = model(torch.stack(list(history))[None], start=hop - len(history) + 1)
                    regular_us.append((time.perf_counter() - start) * 1e6)
                    report.max_logit_diff = max(
                        report.max_logit_diff, float((regular[0] - logits).abs().max())
                    )
                    report.compared_hops += 1
        report.curve = [
            {"hop": h, "time_s": frontend.hop_end_s(h), "accuracy": sum(v) / len(v), "clips": len(v)}
            for h, v in sorted(hits.items())
        ]
        report.continual_us = statistics.median(step_us) if step_us else 0.0
        report.regular_us = statistics.median(regular_us) if regular_us else None
        if not report.compared_hops:  # compare_clips 0: nothing was checked or timed regularly
            report.max_logit_diff = None
        report.continual_flops, report.regular_flops = _flops(model, window)
    return report


def _stream_clip(model, path, frontend, window, embed=None):
    """Yields (hop, logits (C,), the last <= n tokens, step microseconds) per hop, through the
    very :class:`~coaudio.online.session.Session` that ``coaudio stream`` uses."""
    online = OnlineModel(model, [str(i) for i in range(model.cfg.n_classes)], frontend, embed)
    info, blocks = stream_audio(path, block_seconds=online.frontend.hop_s)  # as coaudio stream reads
    session = Session(online, info.sample_rate)
    history: deque = deque(maxlen=window)
    for block in [*blocks, None]:
        hops = session.push(block) if block is not None else session.flush()
        for hop in hops:
            history.append(hop.token)
            # the regular model is timed on the window's tokens, so the continual step is timed
            # without the front end's token function too (it costs the same in both)
            yield hop.index, hop.logits, history, (hop.step_ms - hop.token_ms) * 1e3


def _flops(model: AudioClassifier, window: int) -> tuple[int, int]:
    """Per prediction: one step (counted on the torch kernel) vs the full window recomputed."""
    shape = (PATCH_FRAMES, N_MELS) if model.cfg.inputs == "patches" else (model.cfg.token_dim,)
    x = torch.randn(1, window, *shape)
    state = model.init_state(1)
    for t in range(window):
        _, state = model.step(x[:, t], state, kernel="torch")
    step = counted_flops(lambda: model.step(x[:, 0], state, kernel="torch"))
    return step, counted_flops(lambda: model(x))
