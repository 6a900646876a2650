"""Continual single-output (CoSi) attention step: only the newest token's output, O(n*D) per step.

::

    x_t (B, D) --> q_t, k_t, v_t --> write k_t, v_t into slot t % n of the ring
                                 --> softmax(q_t K^T) V over the n cached keys --> y_t (B, D)

The result equals row ``T-1`` of :meth:`EncoderLayer.forward` on the window of the last n
tokens, because softmax attention is invariant to the order of its keys.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from coaudio.continual.layer import EncoderLayer
from coaudio.continual.state import SingleOutputState


class StepContext(NamedTuple):
    """Per-step indexing shared by all layers of one encoder step.

    slot:     ``(B,)`` long, ring slot of the newest token (``t % n``)
    key_mask: ``(B, n)`` bool, True for filled slots; None once every stream has n tokens
    evicting: ``(B,)`` float, 1 where the slot held a token that leaves the window now,
              0 while that stream is still warming up; None when every stream evicts
    """

    slot: Tensor
    key_mask: Tensor | None
    evicting: Tensor | None


def slot_index(ctx: StepContext, ring: Tensor, slot_dim: int) -> Tensor:
    """``ctx.slot`` shaped for ``scatter``/``gather`` on ``ring`` along ``slot_dim``: the
    ring's shape with size 1 at ``slot_dim`` (an expanded view, no copy)."""
    shape = list(ring.shape)
    shape[slot_dim] = 1
    view = [-1] + [1] * (ring.dim() - 1)
    return ctx.slot.view(view).expand(shape)


def write_slot(ring: Tensor, ctx: StepContext, value: Tensor, slot_dim: int) -> Tensor:
    """Out-of-place ring write: a copy of ``ring`` whose slot ``ctx.slot[b]`` holds ``value[b]``.

    ``slot_dim`` is the ring's slot dimension; ``value`` has the ring's shape without it.
    """
    return ring.scatter(slot_dim, slot_index(ctx, ring, slot_dim), value.unsqueeze(slot_dim))


def read_slot(ring: Tensor, ctx: StepContext, slot_dim: int) -> Tensor:
    """``ring[b, ..., ctx.slot[b], ...]`` for every stream b (the ring without ``slot_dim``)."""
    return ring.gather(slot_dim, slot_index(ctx, ring, slot_dim)).squeeze(slot_dim)


def init_single_output_state(
    layer: EncoderLayer, batch_size: int, window: int, device, dtype
) -> SingleOutputState:
    """Zero-filled ring buffers; empty slots are masked until the stream has n tokens."""
    h, dh = layer.cfg.n_heads, layer.cfg.head_dim
    return SingleOutputState(
        k_t=torch.zeros(batch_size, h, dh, window, device=device, dtype=dtype),
        v_t=torch.zeros(batch_size, h, dh, window, device=device, dtype=dtype),
    )


def single_output_step(
    layer: EncoderLayer, x_t: Tensor, state: SingleOutputState, ctx: StepContext
) -> tuple[Tensor, SingleOutputState]:
    """One CoSi step.

    Args:
        layer: the layer whose weights are used.
        x_t: ``(B, D)`` newest token (positions already added).
        state: the layer's ring buffers; not modified.
        ctx: slot and mask of this step.

    Returns:
        ``(B, D)`` output of the newest token, and the new state.
    """
    q, k, v = layer.project_qkv(x_t)  # each (B, H, Dh)
    k_t = write_slot(state.k_t, ctx, k, slot_dim=3)  # (B, H, Dh, n)
    v_t = write_slot(state.v_t, ctx, v, slot_dim=3)  # (B, H, Dh, n)
    logits = torch.matmul(q.unsqueeze(2), k_t)  # (B, H, 1, n)
    if ctx.key_mask is not None:
        logits = logits.masked_fill(~ctx.key_mask[:, None, None, :], float("-inf"))
    probs = torch.softmax(logits, dim=-1).transpose(-1, -2)  # (B, H, n, 1)
    attended = torch.matmul(v_t, probs)  # (B, H, Dh, 1)
    y = layer.finish(x_t, attended.flatten(1))  # (B, D)
    return y, SingleOutputState(k_t=k_t, v_t=v_t)
