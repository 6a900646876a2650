"""Explicit continual state: typed tuples of tensors, created by ``init_state`` and returned by
``step``. Nothing here is ever written in place.

Every tensor leaf has the batch (stream) dimension first, so many streams can be stacked into
one batched state and split again (:func:`stack_states`, :func:`unstack_states`).

Ring buffers hold the last ``n`` tokens of a stream. Token number ``t`` (0-based, counted from
the start of the stream) lives in slot ``t % n``. Softmax attention does not care about the
order of its keys, so slots are never re-ordered; positions are already inside the tokens
(recycling positional encoding, added before the first layer).
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import Tensor


class SingleOutputState(NamedTuple):
    """State of a single-output (CoSi) layer.

    k_t: ``(B, H, Dh, n)`` keys of the window, stored transposed for ``q @ k_t``.
    v_t: ``(B, H, Dh, n)`` values of the window, also transposed (contiguous over the window,
         which is what the fused kernel's weighted sums run along).
    """

    k_t: Tensor
    v_t: Tensor


class RetroactiveState(NamedTuple):
    """State of a retroactive (CoRe) layer: everything needed to update all n rows per step.

    x:    ``(B, n, D)`` layer inputs of the window (for the residual path)
    q:    ``(B, H, n, Dh)`` scaled queries of the window
    k:    ``(B, H, n, Dh)`` keys
    v:    ``(B, H, n, Dh)`` values
    m:    ``(B, H, n)`` per-row log offset (running max of the row's logits)
    den:  ``(B, H, n)`` softmax denominator of each row, relative to ``exp(m)``
    num:  ``(B, H, n, Dh)`` softmax numerator (weighted value sum), relative to ``exp(m)``
    mass: ``(B, H, n)`` sum of the magnitudes of every term ever added to or subtracted from
          ``den`` since the row was last computed exactly; ``den / mass`` bounds the
          cancellation error, and a row is recomputed when it gets too small.
    """

    x: Tensor
    q: Tensor
    k: Tensor
    v: Tensor
    m: Tensor
    den: Tensor
    num: Tensor
    mass: Tensor


LayerState = Union[SingleOutputState, RetroactiveState, tuple]


class EncoderState(NamedTuple):
    """State of a :class:`~coaudio.continual.encoder.ContinualEncoder`.

    t:      ``(B,)`` int64, tokens consumed so far by each stream (the next token's index)
    layers: one state per layer; regular middle layers keep an empty tuple
    min_t:  ``min(t)`` as a Python int, so warm-up decisions need no device sync
    """

    t: Tensor
    layers: tuple
    min_t: int


def map_leaves(fn, states: list):
    """Apply ``fn(list_of_tensors)`` to corresponding tensor leaves of several states."""
    first = states[0]
    if isinstance(first, Tensor):
        return fn(states)
    if isinstance(first, tuple):
        children = [map_leaves(fn, [s[i] for s in states]) for i in range(len(first))]
        return type(first)(*children) if hasattr(first, "_fields") else tuple(children)
    if isinstance(first, int):  # e.g. EncoderState.min_t: not a tensor, carried along
        return first
    raise TypeError(f"unexpected state leaf {type(first).__name__}")


def stack_states(states: list[EncoderState]) -> EncoderState:
    """Concatenate the streams of several states into one batched state."""
    if not states:
        raise ValueError("stack_states needs at least one state")
    t = torch.cat([s.t for s in states])
    layers = map_leaves(torch.cat, [s.layers for s in states])
    return EncoderState(t=t, layers=layers, min_t=min(s.min_t for s in states))


def unstack_states(state: EncoderState) -> list[EncoderState]:
    """Split a batched state into one state per stream (the inverse of :func:`stack_states`)."""
    batch = state.t.shape[0]
    out = []
    for b in range(batch):
        layers = map_leaves(lambda xs, b=b: xs[0][b : b + 1], [state.layers])
        t = state.t[b : b + 1]
        out.append(EncoderState(t=t, layers=layers, min_t=int(t.item())))
    return out
