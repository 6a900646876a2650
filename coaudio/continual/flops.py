"""FLOPs per prediction: analytic formulas and torch's FlopCounterMode, which must agree.

Convention (the same as FlopCounterMode): FLOPs = 2 x the multiply-accumulates of matrix
products (linear layers, attention products). Element-wise work (softmax, norms, GELU, the
retroactive rescaling) is O(n*D) per step and not counted by either.

Symbols: D = d_model, F = d_ff, n = window, L = layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from coaudio.continual.encoder import EncoderConfig


def _regular_layer_macs(d: int, f: int, n: int) -> int:
    """All n outputs: QKV 3nD^2, QK^T and AV 2n^2 D, out-proj nD^2, FFN 2nDF."""
    return 4 * n * d * d + 2 * n * n * d + 2 * n * d * f


def _last_query_layer_macs(d: int, f: int, n: int) -> int:
    """Only the newest output: K,V for n tokens, one query, one row of everything after."""
    return 2 * n * d * d + d * d + 2 * n * d + d * d + 2 * d * f


def _single_output_step_macs(d: int, f: int, n: int) -> int:
    """CoSi: QKV of one token, one attention row over n keys, one out-proj and FFN row."""
    return 3 * d * d + 2 * n * d + d * d + 2 * d * f


def _retroactive_step_macs(d: int, f: int, n: int) -> int:
    """CoRe: QKV of one token; new and leaving key columns for n rows (2nD); their value
    update (2nD); the new row (2nD); then out-proj and FFN for all n rows. Rows recomputed by
    the stability guard add 2nD/H each; at ordinary logit scales there are none."""
    return 3 * d * d + 6 * n * d + n * d * d + 2 * n * d * f


def analytic_flops(cfg: EncoderConfig, mode: str) -> int:
    """FLOPs of one prediction (the newest token's output).

    mode: "regular" (every layer computes all n outputs, like a stock transformer encoder
    recomputing the window), "regular_last" (the last layer computes only the newest query)
    or "continual" (one :meth:`ContinualEncoder.step` after warm-up).
    """
    d, f, n, layers = cfg.layer.d_model, cfg.layer.d_ff, cfg.window, cfg.n_layers
    if mode == "regular":
        macs = layers * _regular_layer_macs(d, f, n)
    elif mode == "regular_last":
        macs = (layers - 1) * _regular_layer_macs(d, f, n) + _last_query_layer_macs(d, f, n)
    elif mode == "continual":
        if layers == 1:
            macs = _single_output_step_macs(d, f, n)
        else:
            macs = (
                _retroactive_step_macs(d, f, n)
                + (layers - 2) * _regular_layer_macs(d, f, n)
                + _last_query_layer_macs(d, f, n)
            )
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return 2 * macs


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Two batched products, Q K^T and A V (FlopCounterMode has no formula for the CPU
    flash-attention kernel and would count zero)."""
    b, h, tq, dq = query_shape
    tk, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * tq * tk * dq + 2 * b * h * tq * tk * dv


_CPU_SDPA = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
if _CPU_SDPA is not None:
    try:
        register_flop_formula(_CPU_SDPA)(_sdpa_cpu_flops)
    except ValueError:  # a newer torch already knows it
        pass


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn()`` as counted by ``torch.utils.flop_counter.FlopCounterMode``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
