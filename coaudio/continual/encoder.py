"""Continual transformer encoder: train on windows with ``forward``, run per token with ``step``.

Which kernel runs where during ``step`` (n = window, L = number of layers)::

    L = 1:   token -> [CoSi layer] -> y_t                                   O(n*D + D^2)
    L = 2:   token -> [CoRe layer] -> n rows -> [single-output layer] -> y_t
    L >= 3:  token -> [CoRe layer] -> n rows -> [regular layers] -> [single-output layer] -> y_t

Every row of the first layer changes when the window slides, so only the first layer can be
updated incrementally; the layers after it see n new rows each step and are run regularly
(the last one only for the newest token's query).

Warm-up: the first n-1 tokens of a stream have no full window. ``step`` returns None for
them unless ``emit_partial=True``, in which case it returns exactly what ``forward`` returns
on the shorter window of the tokens seen so far (equivalently, on a window left-padded to n
with ``key_mask`` False on the padding). From token n-1 on, ``step`` equals ``forward`` on
the window of the last n tokens with ``start = t - n + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from coaudio.continual import native
from coaudio.continual.layer import EncoderLayer, LayerConfig
from coaudio.continual.positional import KINDS as POSITIONAL_KINDS
from coaudio.continual.positional import PositionalEncoding
from coaudio.continual.retroactive import init_retroactive_state, retroactive_step
from coaudio.continual.single_output import (
    StepContext,
    init_single_output_state,
    single_output_step,
)
from coaudio.continual.state import EncoderState


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of a continual encoder."""

    layer: LayerConfig = field(default_factory=LayerConfig)
    n_layers: int = 1  # 1: CoSi; 2: CoRe + single-output; >= 3: CoRe, regular..., single-output
    window: int = 120  # n, tokens per window
    positional: str = "recycling"  # "recycling" | "absolute" (regular baseline only) | "none"
    period: int = 0  # positional table size P; 0 = 2 * window - 1

    def __post_init__(self) -> None:
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {self.n_layers}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.positional not in POSITIONAL_KINDS:
            raise ValueError(f"positional must be one of {POSITIONAL_KINDS}, got {self.positional!r}")
        if self.period < 0:
            raise ValueError(f"period must be >= 0, got {self.period}")

    @property
    def table_size(self) -> int:
        return self.period or 2 * self.window - 1


class ContinualEncoder(nn.Module):
    """Positional encoding followed by ``n_layers`` encoder layers."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.positions = PositionalEncoding(cfg.positional, cfg.layer.d_model, cfg.table_size)
        self.layers = nn.ModuleList(EncoderLayer(cfg.layer) for _ in range(cfg.n_layers))

    @property
    def window(self) -> int:
        return self.cfg.window

    # ------------------------------------------------------------------ regular path
    def forward(
        self,
        x: Tensor,
        *,
        start: Tensor | int = 0,
        key_mask: Tensor | None = None,
        last_only: bool = True,
    ) -> Tensor:
        """Run the window regularly (training, and the reference for ``step``).

        Args:
            x: ``(B, T, D)`` tokens, oldest first. T may be shorter than the window.
            start: stream index of ``x[:, 0]`` (int or ``(B,)`` long); sets the positions.
            key_mask: ``(B, T)`` bool, False on padding.
            last_only: return only the newest token's output.

        Returns:
            ``(B, D)`` if ``last_only`` else ``(B, T, D)``.
        """
        x = self.positions.window(x, start)
        for layer in self.layers[:-1]:
            x = layer(x, key_mask)
        if last_only:
            return self.layers[-1](x, key_mask, query_index=-1).squeeze(1)
        return self.layers[-1](x, key_mask)

    # ------------------------------------------------------------------ continual path
    def init_state(
        self, batch_size: int = 1, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> EncoderState:
        """A fresh state for ``batch_size`` streams (device/dtype default to the weights')."""
        ref = self.layers[0].qkv.weight
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        layer_states = []
        for i, layer in enumerate(self.layers):
            if i == 0 and self.cfg.n_layers == 1:
                layer_states.append(init_single_output_state(layer, batch_size, self.window, device, dtype))
            elif i == 0:
                layer_states.append(init_retroactive_state(layer, batch_size, self.window, device, dtype))
            else:
                layer_states.append(())  # recomputed from the first layer's rows each step
        t = torch.zeros(batch_size, dtype=torch.long, device=device)
        return EncoderState(t=t, layers=tuple(layer_states), min_t=0)

    def step(
        self,
        x_t: Tensor,
        state: EncoderState,
        *,
        emit_partial: bool = False,
        kernel: str = "auto",
    ) -> tuple[Tensor | None, EncoderState]:
        """Consume one token per stream.

        Args:
            x_t: ``(B, D)`` newest token of each stream.
            state: from :meth:`init_state` or a previous step; never modified.
            emit_partial: also return outputs while the window is not yet full.
            kernel: "auto" uses the fused C kernels where they apply (CPU, float32,
                gradients off; see :mod:`coaudio.continual.native`): the whole step of a
                one-layer encoder, the retroactive update of deeper ones. "torch" always uses
                torch operations; "native" requires the fused kernels.

        Returns:
            ``(B, D)`` output of the newest token (None while warming up, see the module
            docstring), and the new state.

        Steps never record autograd history, even with gradients enabled: a state carried
        over a long stream would otherwise chain every step into one growing graph. Training
        uses :meth:`forward`.
        """
        if torch.is_grad_enabled():  # checked first: no context switch on the inference path
            with torch.no_grad():
                return self.step(x_t, state, emit_partial=emit_partial, kernel=kernel)
        path, bound = self._dispatch(x_t, kernel)
        if bound is not None:
            y, new_state = native.single_layer_step(bound, x_t, state)
        else:
            y, new_state = self._layered_step(x_t, state, fused_first=path == "native-retroactive")
        warm = state.min_t + 1 >= self.window
        return (y if warm or emit_partial else None), new_state

    def step_kernel(self, x_t: Tensor, kernel: str = "auto") -> str:
        """Which implementation :meth:`step` runs for this input: "native" (the whole step in
        C, one layer), "native-retroactive" (the first layer's update in C, the rest in torch)
        or "torch"."""
        return self._dispatch(x_t, kernel)[0]

    def _dispatch(self, x_t: Tensor, kernel: str):
        """``(path, binding)``: the binding of the one-layer kernel when path is "native"."""
        if kernel not in ("auto", "torch", "native"):
            raise ValueError(f"kernel must be 'auto', 'torch' or 'native', got {kernel!r}")
        path, bound = "torch", None
        if kernel != "torch" and self.cfg.n_layers == 1:
            bound = native.binding(self, x_t)
            path = "torch" if bound is None else "native"
        elif kernel != "torch" and native.retroactive_usable(self.layers[0], x_t):
            path = "native-retroactive"
        if kernel == "native" and path == "torch":
            raise RuntimeError(
                "the fused kernels need float32 CPU tensors, gradients off, no dropout, "
                "recycling or no positions, and a C compiler (COAUDIO_NATIVE not 0)"
            )
        return path, bound

    def _layered_step(
        self, x_t: Tensor, state: EncoderState, fused_first: bool
    ) -> tuple[Tensor, EncoderState]:
        ctx = self._context(state)
        x = self.positions.token(x_t, state.t)
        first = self.layers[0]
        if self.cfg.n_layers == 1:
            y, first_state = single_output_step(first, x, state.layers[0], ctx)
        else:
            if fused_first:
                rows, first_state = native.retroactive_step(first, x, state.layers[0], ctx, state.t)
            else:
                rows, first_state = retroactive_step(first, x, state.layers[0], ctx)
            for layer in self.layers[1:-1]:
                rows = layer(rows, ctx.key_mask)
            y = self.layers[-1](rows, ctx.key_mask, query_index=ctx.slot).squeeze(1)
        new_state = EncoderState(
            t=state.t + 1,
            layers=(first_state,) + tuple(state.layers[1:]),
            min_t=state.min_t + 1,
        )
        return y, new_state

    def _context(self, state: EncoderState) -> StepContext:
        """Slots and masks for this step; masks are skipped once every window is full."""
        n, t = self.window, state.t
        key_mask = evicting = None
        if state.min_t < n - 1:  # after this token, slots 0..t are filled
            key_mask = torch.arange(n, device=t.device)[None, :] <= t[:, None]
        if state.min_t < n:  # slot t % n held token t - n only if t >= n
            evicting = (t >= n).to(self.layers[0].qkv.weight.dtype)
        return StepContext(t % n, key_mask, evicting)
