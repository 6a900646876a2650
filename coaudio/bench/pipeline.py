"""The whole online pipeline per hop: audio block -> log-mel -> embed -> prediction.

Three pipelines get the same audio, one hop-sized block at a time, in interleaved order:

* ``continual``: :class:`coaudio.online.session.Session` (streaming log-mel, the learned
  embedder on the new patch, one continual step): what ``coaudio stream`` runs;
* ``regular``: the same streaming log-mel, then the regular model on the window of the last
  n patches (every patch re-embedded, the encoder recomputed): a stock sliding-window model;
* ``regular_cached``: the regular encoder on cached tokens (only the new patch embedded), the
  strongest non-continual baseline.

Reported: per-hop latency (mean and p95 over the measured hops, after the window has filled),
real-time factor (latency / hop duration), FLOPs per hop of the model part (FlopCounterMode;
the log-mel front end is the same in all three and is timed, not counted) and the largest
difference between continual and regular logits.
"""

from __future__ import annotations

import statistics
import time
from collections import deque

import numpy as np
import torch

from coaudio.continual import EncoderConfig, LayerConfig
from coaudio.continual.flops import counted_flops
from coaudio.features.frontend import FrontendConfig
from coaudio.features.logmel import PATCH_FRAMES
from coaudio.features.stream import StreamingLogMel
from coaudio.models.classifier import AudioClassifier, ModelConfig
from coaudio.online.model import OnlineModel
from coaudio.online.session import Session, p95

GTZAN = {"token_dim": 128, "embedder_width": 16, "d_model": 192, "n_heads": 16, "d_ff": 192, "hop_frames": 25}


def gtzan_model(
    window: int = 120, blocks: int = 1, seed: int = 0, embedder_width: int = GTZAN["embedder_width"]
) -> OnlineModel:
    """The GTZAN recipe's classifier (random weights, eval mode) with its 0.25 s hop."""
    torch.manual_seed(seed)
    layer = LayerConfig(d_model=GTZAN["d_model"], n_heads=GTZAN["n_heads"], d_ff=GTZAN["d_ff"], dropout=0.0)
    cfg = ModelConfig(
        n_classes=10,
        token_dim=GTZAN["token_dim"],
        embedder_width=embedder_width,
        encoder=EncoderConfig(layer=layer, n_layers=blocks, window=window),
    )
    return OnlineModel(
        AudioClassifier(cfg).eval(),
        [f"g{i}" for i in range(10)],
        FrontendConfig(hop_frames=GTZAN["hop_frames"]),
    )


class _Regular:
    """Streaming log-mel + the regular model over the window each hop."""

    def __init__(self, online: OnlineModel, sample_rate: int, cached: bool) -> None:
        self.model, self.cached, self.n = online.model, cached, online.window
        self.extractor = StreamingLogMel(sample_rate, hop_frames=online.frontend.hop_frames)
        self.window: deque = deque(maxlen=self.n)
        self.hop = 0

    def push(self, block: np.ndarray) -> list[torch.Tensor]:
        out = []
        for patch in self.extractor.push(block)[1]:
            self.window.append(self.model.tokens(patch[None])[0] if self.cached else patch)
            start = self.hop - len(self.window) + 1
            window = torch.stack(list(self.window))[None]
            if self.cached:
                out.append(self.model.head(self.model.head_norm(self.model.encoder(window, start=start)))[0])
            else:
                out.append(self.model(window, start=start)[0])
            self.hop += 1
        return out


def run(
    window: int = 120, blocks: int = 1, sample_rate: int = 16_000, measured_hops: int = 200, threads: int = 1
) -> dict:
    """One record (JSON-ready) for the GTZAN shape with ``window`` tokens and ``blocks`` layers."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(window, blocks, sample_rate, measured_hops, threads)
    finally:
        torch.set_num_threads(previous)


def _run(window: int, blocks: int, sample_rate: int, measured_hops: int, threads: int) -> dict:
    online = gtzan_model(window, blocks)
    hop_s = online.frontend.hop_s
    block = int(round(hop_s * sample_rate))
    total_hops = window + measured_hops + 4
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(block * total_hops)).astype(np.float32)
    pipelines = {
        "continual": Session(online, sample_rate),
        "regular": _Regular(online, sample_rate, False),
        "regular_cached": _Regular(online, sample_rate, True),
    }
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    worst = 0.0
    with torch.inference_mode():
        for i in range(total_hops):
            chunk = audio[i * block : (i + 1) * block]
            order = list(pipelines) if i % 2 else list(reversed(pipelines))  # alternate who goes first
            outputs = {}
            for name in order:
                started = time.perf_counter()
                outputs[name] = pipelines[name].push(chunk)
                times[name].append((time.perf_counter() - started) * 1e6)
            if i >= window + 4:
                continual = [h.logits for h in outputs["continual"]]
                for a, b in zip(continual, outputs["regular"]):
                    worst = max(worst, float((a - b).abs().max()))
        flops = _flops(online)
    record = {
        "window": window,
        "blocks": blocks,
        "sample_rate": sample_rate,
        "hop_s": hop_s,
        "threads": threads,
        "measured_hops": measured_hops,
        "max_abs_diff": worst,
    }
    for name, values in times.items():
        values = sorted(values[-measured_hops:])  # after the window has filled
        record[f"{name}_us"] = statistics.fmean(values)
        record[f"{name}_p95_us"] = p95(values)
        record[f"{name}_rtf"] = record[f"{name}_us"] / 1e6 / hop_s
        record[f"{name}_mflops"] = flops[name] / 1e6
    for name in ("regular", "regular_cached"):
        record[f"speedup_vs_{name}"] = record[f"{name}_us"] / record["continual_us"]
        record[f"flops_ratio_vs_{name}"] = flops[name] / flops["continual"]
    return record


def _flops(online: OnlineModel) -> dict[str, int]:
    """Model FLOPs per hop with a full window (the torch step kernel, which the counter sees)."""
    model, n = online.model, online.window
    patches = torch.randn(1, n, PATCH_FRAMES, 64)
    state = model.init_state(1)
    for t in range(n):
        _, state = model.step(patches[:, t], state, kernel="torch")
    tokens = model.tokens(patches)
    return {
        "continual": counted_flops(lambda: model.step(patches[:, 0], state, kernel="torch")),
        "regular": counted_flops(lambda: model(patches)),
        "regular_cached": counted_flops(lambda: model.tokens(patches[:, 0]))
        + counted_flops(lambda: model.head(model.head_norm(model.encoder(tokens)))),
    }
