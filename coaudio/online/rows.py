"""Streams' continual states as rows of shared batch states, gathered without per-stream work.

After a batched step every stream of the round holds the round's new batch state and its row
in it (no split into one state per stream). The next round of the same streams, in the same
order, passes that batch state to the model as it is: no copy at all. A round of other streams
gathers, per batch state it draws from, one slice (rows in a run) or one ``index_select``, then
concatenates the parts: a few tensor operations per round, not per stream.

States are never written in place (:mod:`coaudio.continual.state`): a batch state that some of
its streams have moved on from stays valid for the others.
"""

from __future__ import annotations

import torch
from torch import Tensor

from coaudio.continual.state import EncoderState, map_leaves


def gather(states: list[EncoderState], rows: list[int], min_t: int) -> EncoderState:
    """One batch state of the given rows: row ``i`` of the result is row ``rows[i]`` of
    ``states[i]`` (``EncoderState`` leaves ``(B_i, ...)`` -> ``(len(rows), ...)``).

    Args:
        states: per stream, the batch state it holds (the same object for streams that stepped
            together).
        rows: per stream, its row in that state.
        min_t: the smallest token count of the gathered streams (``EncoderState.min_t``).
    """
    first = states[0]
    if all(s is first for s in states) and rows == list(range(first.t.shape[0])):
        return first if first.min_t == min_t else first._replace(min_t=min_t)
    parts = []
    start = 0
    for end in range(1, len(states) + 1):  # runs of streams that hold the same batch state
        if end == len(states) or states[end] is not states[start]:
            parts.append(_take(states[start], rows[start:end]))
            start = end
    if len(parts) == 1:
        return EncoderState(t=parts[0][0], layers=parts[0][1], min_t=min_t)
    t = torch.cat([p[0] for p in parts])
    layers = map_leaves(torch.cat, [p[1] for p in parts])
    return EncoderState(t=t, layers=layers, min_t=min_t)


def _take(state: EncoderState, rows: list[int]) -> tuple[Tensor, tuple]:
    """``(t, layers)`` of ``rows`` of ``state``: views when the rows are consecutive."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        pick = lambda x: x[rows[0] : rows[0] + len(rows)]  # noqa: E731
    else:
        index = torch.tensor(rows)
        pick = lambda x: x.index_select(0, index)  # noqa: E731
    return pick(state.t), map_leaves(lambda xs: pick(xs[0]), [state.layers])
