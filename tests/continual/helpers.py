"""Shared builders for the continual-core tests."""

from __future__ import annotations

import torch

from coaudio.continual import ContinualEncoder, EncoderConfig, LayerConfig


def make_encoder(
    n_layers: int,
    window: int,
    d_model: int = 32,
    n_heads: int = 4,
    d_ff: int = 48,
    dtype: torch.dtype = torch.float64,
    **layer_kwargs,
) -> ContinualEncoder:
    layer = LayerConfig(d_model=d_model, n_heads=n_heads, d_ff=d_ff, dropout=0.0, **layer_kwargs)
    cfg = EncoderConfig(layer=layer, n_layers=n_layers, window=window)
    return ContinualEncoder(cfg).to(dtype).eval()


def windows_of(x: torch.Tensor, n: int, first_end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All full windows of ``x`` (B=1, T, D) ending at tokens first_end..T-1, as one batch.

    Returns ``(W, n, D)`` windows and their ``(W,)`` start indices.
    """
    ends = range(first_end, x.shape[1])
    starts = torch.tensor([e - n + 1 for e in ends])
    return torch.stack([x[0, s : s + n] for s in starts.tolist()]), starts


def stream(encoder: ContinualEncoder, x: torch.Tensor, **step_kwargs) -> list:
    """Step every token of ``x`` (B, T, D) through a fresh state; returns the outputs."""
    state = encoder.init_state(x.shape[0])
    outputs = []
    for t in range(x.shape[1]):
        y, state = encoder.step(x[:, t], state, **step_kwargs)
        outputs.append(y)
    return outputs
