"""Positional encodings whose output is a pure function of the token's index.

Recycling positional encoding (RPE): token number t of a stream gets row ``t mod P`` of a
learned table, fixed at arrival, so cached keys and values stay valid as the window slides.
The index comes from the caller (a window's ``start``, a stream state's ``t``); the module has
no counter, so calling it twice gives the same answer.

The absolute encoding (row ``tau`` for the tau-th token of a window) is the regular baseline:
every token's position changes when the window slides, so it cannot be run continually.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

KINDS = ("recycling", "absolute", "none")


class PositionalEncoding(nn.Module):
    """A learned table of positional embeddings.

    Args:
        kind: "recycling" (index = stream position mod ``period``), "absolute" (index =
            position inside the window) or "none".
        d_model: embedding width D.
        period: table size P; for "recycling" P >= 2n - 1 keeps every signed offset inside a
            window distinct, for "absolute" it must be >= the window length.
    """

    def __init__(self, kind: str, d_model: int, period: int) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"positional encoding must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.period = period
        self.table = None if kind == "none" else nn.Parameter(torch.randn(period, d_model) * 0.02)

    def window(self, x: Tensor, start: Tensor | int = 0) -> Tensor:
        """Add positions to a window ``(B, T, D)``; its first token has stream index ``start``
        (an int, or a ``(B,)`` long tensor for windows from different places)."""
        if self.table is None:
            return x
        steps = torch.arange(x.shape[1], device=x.device)
        if self.kind == "absolute":
            if x.shape[1] > self.period:
                raise ValueError(f"window of {x.shape[1]} tokens exceeds the {self.period} positions")
            return x + self.table[steps]
        if isinstance(start, Tensor):
            steps = start.view(-1, 1) + steps  # (B, T)
        else:
            steps = steps + start
        return x + self.table[steps % self.period]

    def token(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Add the position of token number ``t`` (``(B,)`` long) to ``x_t`` ``(B, D)``."""
        if self.table is None:
            return x_t
        if self.kind == "absolute":
            raise ValueError(
                "absolute positions move with the window, so cached keys would go stale; "
                "use positional='recycling' (or 'none') for continual inference"
            )
        return x_t + self.table.index_select(0, t % self.period)
