"""Online audio classifier: patch -> token -> continual encoder -> label of the newest token.

::

    patch (96, 64) --PatchEmbedder--> (token_dim) --Linear--> (D)  [or a precomputed token]
        -> recycling positions -> continual encoder (1, 2 or N layers)
        -> LayerNorm -> Linear -> logits (n_classes), from the newest token

``forward`` classifies windows (training, batch evaluation); ``step`` consumes one hop and
returns the same logits as ``forward`` on the window that ends at that hop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from coaudio.continual import ContinualEncoder, EncoderConfig, EncoderState
from coaudio.features.embed import PatchEmbedder

INPUTS = ("patches", "tokens")


@dataclass(frozen=True)
class ModelConfig:
    n_classes: int
    inputs: str = "patches"  # "patches": (96, 64) log-mel patches; "tokens": precomputed vectors
    token_dim: int = 128  # width of the patch embedding / of precomputed tokens (VGGish: 128)
    embedder_width: int = 8  # channels of the first PatchEmbedder conv
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # tokens only: standardise each token dimension with fixed statistics (buffers token_mean,
    # token_std, set from the training tokens before training; see set_token_stats)
    token_norm: bool = False

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {self.inputs!r}")
        if self.token_norm and self.inputs != "tokens":
            raise ValueError("token_norm standardises precomputed tokens: it needs inputs = tokens")


class AudioClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.encoder.layer.d_model
        self.embed = (
            PatchEmbedder(cfg.token_dim, cfg.embedder_width) if cfg.inputs == "patches" else nn.Identity()
        )
        if cfg.token_norm:  # fixed, not trained: part of the checkpoint, used by every path
            self.register_buffer("token_mean", torch.zeros(cfg.token_dim))
            self.register_buffer("token_std", torch.ones(cfg.token_dim))
        self.proj = nn.Linear(cfg.token_dim, d)
        self.encoder = ContinualEncoder(cfg.encoder)
        self.head_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_classes)

    def tokens(self, inputs: Tensor) -> Tensor:
        """``(..., 96, 64)`` patches or ``(..., token_dim)`` tokens -> ``(..., D)``."""
        if self.cfg.inputs == "patches":
            lead = inputs.shape[:-2]
            embedded = self.embed(inputs.reshape(-1, *inputs.shape[-2:])).reshape(*lead, -1)
        elif self.cfg.token_norm:
            embedded = (inputs - self.token_mean) / self.token_std
        else:
            embedded = inputs
        return self.proj(embedded)

    def set_token_stats(self, tokens: Tensor) -> None:
        """Standardise with the per-dimension mean and std of ``tokens`` ``(N, token_dim)``
        (pretrained features differ in scale by orders of magnitude: musicnn's max-pool reaches
        100+, its other dimensions stay near 0.1)."""
        std, mean = torch.std_mean(tokens.double(), dim=0, correction=0)
        self.token_mean.copy_(mean.float())
        self.token_std.copy_(std.clamp_min(1e-6).float())

    def forward(
        self,
        inputs: Tensor,
        *,
        start: Tensor | int = 0,
        key_mask: Tensor | None = None,
        index: Tensor | None = None,
        mix: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Logits ``(B, n_classes)`` of the newest token of each window.

        Args:
            inputs: ``(B, T, 96, 64)`` patches or ``(B, T, token_dim)`` tokens, oldest first;
                with ``index``, the ``(U, 96, 64)`` / ``(U, token_dim)`` tokens the windows share.
            start: stream index of the first token (sets the recycling positions).
            key_mask: ``(B, T)`` bool, False on padding.
            index: ``(B, T)`` long: window ``b``'s token ``t`` is ``inputs[index[b, t]]``, so a
                token that several windows read is embedded once (training's shared batches).
            mix: training's mixup, ``(partner (B,) long, weight (B,))``: window ``b``'s tokens
                become ``weight * own + (1 - weight) * partner's``, aligned at the newest token,
                and it sees the keys either window has.
        """
        x = self.tokens(inputs)
        if index is not None:
            x = x[index]  # (U, D) -> (B, T, D): embedding is per token, so gathering after it is exact
        if mix is not None:
            partner, weight = mix
            weight = weight.to(x.dtype).reshape(-1, 1, 1)
            if key_mask is not None:  # padding must add nothing to the partner's tokens
                x = x * key_mask.unsqueeze(-1).to(x.dtype)
            x = weight * x + (1 - weight) * x[partner]
            if key_mask is not None:
                key_mask = key_mask | key_mask[partner]
        last = self.encoder(x, start=start, key_mask=key_mask)
        return self.head(self.head_norm(last))

    def init_state(self, batch_size: int = 1, device=None, dtype=None) -> EncoderState:
        return self.encoder.init_state(batch_size, device, dtype)

    def step(
        self, inputs: Tensor, state: EncoderState, *, emit_partial: bool = False, kernel: str = "auto"
    ) -> tuple[Tensor | None, EncoderState]:
        """One hop per stream: ``(B, 96, 64)`` patches or ``(B, token_dim)`` tokens ->
        logits ``(B, n_classes)`` (None while warming up, as in the encoder) and new state;
        no autograd history is recorded (see :meth:`ContinualEncoder.step`)."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.step(inputs, state, emit_partial=emit_partial, kernel=kernel)
        return self.step_embedded(self.tokens(inputs), state, emit_partial=emit_partial, kernel=kernel)

    def step_embedded(
        self, z: Tensor, state: EncoderState, *, emit_partial: bool = False, kernel: str = "auto"
    ) -> tuple[Tensor | None, EncoderState]:
        """:meth:`step` on tokens already through :meth:`tokens`: ``(B, D)`` -> logits. Lets
        offline callers embed a block of patches in one batch, then step token by token.
        Like the encoder's step, it never records autograd history."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.step_embedded(z, state, emit_partial=emit_partial, kernel=kernel)
        y, state = self.encoder.step(z, state, emit_partial=emit_partial, kernel=kernel)
        return (None if y is None else self.head(self.head_norm(y))), state
