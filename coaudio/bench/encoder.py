"""Per-step latency and FLOPs: regular window recompute vs the continual step, side by side.

For each configuration one run builds one encoder (random weights, eval mode, float32,
batch 1), streams tokens through it, and times in interleaved rounds:

* ``regular``: slide the window by one token and recompute every layer over all n tokens
  (what a stock transformer encoder does);
* ``regular_last``: the same, with the last layer computing only the newest query (the
  cheapest obvious non-continual baseline);
* ``continual``: one :meth:`ContinualEncoder.step` (on the CPU in float32 this uses the fused C
  kernels of :mod:`coaudio.continual.native` when they could be built; ``kernel`` says which);
* ``continual_torch``: the same step forced through torch operations, the same framework as the
  regular baselines;
* ``reference``: the authors' ``continual-inference`` library's ``forward_step`` on the same
  shape, when that package is importable (optional, see :mod:`coaudio.bench.reference`).

Latencies are medians over rounds of the mean per-step time inside a round. Speed-ups are
ratios measured in the same run. ``max_abs_diff`` compares continual outputs with the regular
recompute on the same windows.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from coaudio.bench.reference import reference_stepper
from coaudio.continual import ContinualEncoder, EncoderConfig, LayerConfig
from coaudio.continual.flops import analytic_flops, counted_flops

log = logging.getLogger(__name__)

# Model shapes the benchmark knows by name: (d_model, n_heads, d_ff).
MODELS = {
    "gtzan": (192, 16, 192),  # the paper's GTZAN configuration
    "small": (128, 4, 256),
}


@dataclass(frozen=True)
class BenchCase:
    model: str
    blocks: int
    window: int

    def encoder_config(self) -> EncoderConfig:
        d, h, f = MODELS[self.model]
        layer = LayerConfig(d_model=d, n_heads=h, d_ff=f, dropout=0.0)
        return EncoderConfig(layer=layer, n_layers=self.blocks, window=self.window)


def cases(models, blocks, windows) -> list[BenchCase]:
    return [BenchCase(m, b, n) for m in models for b in blocks for n in windows]


class _Stream:
    """Keeps a regular sliding window and a continual state over the same token stream."""

    def __init__(self, encoder: ContinualEncoder, tokens: torch.Tensor) -> None:
        self.encoder, self.tokens = encoder, tokens  # tokens: (steps, D) cycled
        # one (1, D) tensor per token, so fetching the next one costs no tensor operation
        self.token_list = [token[None] for token in tokens]
        self.n = encoder.window
        self.t = 0
        self.state = encoder.init_state(1)
        self.window = torch.stack([tokens[i % len(tokens)] for i in range(self.n)])[None]
        for i in range(self.n):  # warm up the continual state on the same first window
            _, self.state = encoder.step(self.window[:, i], self.state)
        self.t = self.n

    def next_token(self) -> torch.Tensor:
        token = self.token_list[self.t % len(self.token_list)]  # (1, D)
        self.t += 1
        return token

    def regular_step(self, last_only: bool) -> torch.Tensor:
        token = self.next_token()
        self.window = torch.cat([self.window[:, 1:], token[:, None]], dim=1)
        start = self.t - self.n
        out = self.encoder(self.window, start=start, last_only=last_only)
        return out if last_only else out[:, -1]

    def continual_step(self, kernel: str = "auto") -> torch.Tensor:
        y, self.state = self.encoder.step(self.next_token(), self.state, kernel=kernel)
        return y


def _time_per_step(fn: Callable[[], object], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps * 1e6


def _max_abs_diff(encoder: ContinualEncoder, tokens: torch.Tensor, steps: int) -> float:
    """Continual vs regular on the same windows, over ``steps`` steps past warm-up."""
    stream = _Stream(encoder, tokens)
    worst = 0.0
    for _ in range(steps):
        y = stream.continual_step()
        start = stream.t - stream.n
        window = torch.stack([tokens[i % len(tokens)] for i in range(start, stream.t)])[None]
        ref = encoder(window, start=start)
        worst = max(worst, float((y - ref).abs().max()))
    return worst


def run_case(case: BenchCase, rounds: int = 5, target_s: float = 0.05, seed: int = 0) -> dict:
    """Benchmark one configuration; returns one JSON-ready record."""
    torch.manual_seed(seed)
    cfg = case.encoder_config()
    encoder = ContinualEncoder(cfg).eval()
    tokens = torch.randn(4 * cfg.window + 7, cfg.layer.d_model)
    with torch.inference_mode():
        names = ("regular", "last", "continual", "torch")
        streams = {name: _Stream(encoder, tokens) for name in names}
        methods = {
            "regular": lambda: streams["regular"].regular_step(last_only=False),
            "regular_last": lambda: streams["last"].regular_step(last_only=True),
            "continual": streams["continual"].continual_step,
            "continual_torch": lambda: streams["torch"].continual_step(kernel="torch"),
        }
        reference = reference_stepper(cfg, tokens)
        if reference is not None:
            methods["reference"] = reference
        steps = {name: _calibrate(fn, target_s) for name, fn in methods.items()}
        samples: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(rounds):  # interleaved, so background load hits every method alike
            for name, fn in methods.items():
                samples[name].append(_time_per_step(fn, steps[name]))
        window = tokens[None, : cfg.window]
        flops = {
            "regular": counted_flops(lambda: encoder(window, last_only=False)),
            "regular_last": counted_flops(lambda: encoder(window)),
            # the counter sees torch operations only, so count the torch kernel (same algorithm)
            "continual": counted_flops(lambda: streams["torch"].continual_step(kernel="torch")),
        }
        diff = _max_abs_diff(encoder, tokens, steps=min(3 * cfg.window, 400))
        kernel = encoder.step_kernel(tokens[:1])
    us = {name: statistics.median(v) for name, v in samples.items()}
    record = {
        "model": case.model,
        "d_model": cfg.layer.d_model,
        "heads": cfg.layer.n_heads,
        "d_ff": cfg.layer.d_ff,
        "n": cfg.window,
        "blocks": cfg.n_layers,
        "regular_us": us["regular"],
        "regular_last_us": us["regular_last"],
        "continual_us": us["continual"],
        "continual_torch_us": us["continual_torch"],
        "kernel": kernel,
        "speedup": us["regular"] / us["continual"],
        "speedup_torch": us["regular"] / us["continual_torch"],
        "speedup_vs_last": us["regular_last"] / us["continual"],
        "regular_flops": flops["regular"],
        "regular_last_flops": flops["regular_last"],
        "continual_flops": flops["continual"],
        "flops_ratio": flops["regular"] / flops["continual"],
        "max_abs_diff": diff,
        "reference_us": us.get("reference"),
        "speedup_vs_reference": us["reference"] / us["continual"] if "reference" in us else None,
    }
    for name in ("regular", "regular_last", "continual"):
        record[f"{name}_flops_analytic"] = analytic_flops(cfg, name)
    log.info("benchmarked %s", case)
    return record


def _calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Steps per round so that a round lasts about ``target_s`` (at least 3)."""
    per_step = _time_per_step(fn, 3) / 1e6
    return max(3, int(target_s / max(per_step, 1e-7)))


def run(case_list: list[BenchCase], threads: int = 1, **kwargs) -> Iterator[dict]:
    """Benchmark each case with ``threads`` intra-op threads; yields one record per case."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for case in case_list:
            record = run_case(case, **kwargs)
            record["threads"] = threads
            yield record
    finally:
        torch.set_num_threads(previous)
