"""The authors' library (``continual-inference``, import name ``continual``) as an optional
third column of the benchmark: same shape, its public ``forward_step``.

It is never a dependency. Install it without its dependencies so it cannot pull another
torch build: ``pip install --no-deps continual-inference`` (it also needs numpy).
Only its speed is used: its "gelu" is silently a ReLU and its 2-layer output drifts after
2n-2 steps (see the README), so its outputs are not compared here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch
from torch import nn

from coaudio.continual.encoder import EncoderConfig

log = logging.getLogger(__name__)


def reference_stepper(cfg: EncoderConfig, tokens: torch.Tensor) -> Callable[[], object] | None:
    """A warmed-up ``forward_step`` closure of the same shape, or None if not installed."""
    try:
        import continual as co
    except Exception as exc:  # ImportError, or a broken install
        log.info("continual-inference not available (%s); skipping its column", exc)
        return None
    layer = cfg.layer
    regular = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(layer.d_model, layer.n_heads, layer.d_ff, dropout=0.0, batch_first=True),
        cfg.n_layers,
        enable_nested_tensor=False,
    ).eval()
    try:
        with warnings.catch_warnings():  # its state_dict call uses deprecated positional args
            warnings.simplefilter("ignore", FutureWarning)
            stepper = co.TransformerEncoder.build_from(regular, sequence_len=cfg.window).eval()
    except Exception as exc:  # e.g. n_layers >= 3 is an unimplemented stub in 1.2.4
        log.info("continual-inference cannot build %d layers: %s", cfg.n_layers, exc)
        return None
    position = [0]

    def step() -> object:
        x_t = tokens[position[0] % len(tokens)][None]  # (1, D)
        position[0] += 1
        return stepper.forward_step(x_t)

    for _ in range(cfg.window):
        step()
    return step
