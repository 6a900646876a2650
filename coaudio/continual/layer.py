"""One transformer encoder layer with a regular (window) path and two continual step paths.

Layout conventions used throughout ``coaudio.continual``:

* window of tokens: ``(B, T, D)``; one new token: ``(B, D)``
* per-head tensors: ``(B, H, T, Dh)`` with ``Dh = D // H``
* ``key_mask``: ``(B, T)`` bool, True where a token is real (False = padding / not yet seen)

The layer owns parameters only. Continual state lives in the NamedTuples of
:mod:`coaudio.continual.state` and is passed in and returned by the step functions in
:mod:`coaudio.continual.single_output` and :mod:`coaudio.continual.retroactive`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = ("gelu", "relu")


@dataclass(frozen=True)
class LayerConfig:
    """Hyper-parameters of one encoder layer."""

    d_model: int = 192  # token width D
    n_heads: int = 16  # H; head width Dh = D / H
    d_ff: int = 192  # hidden width of the feed-forward block
    dropout: float = 0.1  # used by forward() in training mode only
    activation: str = "gelu"  # "gelu" (exact, erf-based) or "relu"
    norm_first: bool = False  # False = post-LN as in the paper; True = pre-LN
    bias: bool = True  # biases of the attention projections
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class EncoderLayer(nn.Module):
    """Multi-head self-attention + feed-forward block (post-LN or pre-LN).

    The same parameters serve the regular :meth:`forward` over a window and the continual
    step kernels, which is what makes continual inference exact.
    """

    def __init__(self, cfg: LayerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.qkv = nn.Linear(d, 3 * d, bias=cfg.bias)
        self.out = nn.Linear(d, d, bias=cfg.bias)
        self.ff1 = nn.Linear(d, cfg.d_ff)
        self.ff2 = nn.Linear(cfg.d_ff, d)
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        # Queries are multiplied by this before the dot product (not the logits afterwards).
        self.scale = 1.0 / math.sqrt(cfg.head_dim)

    # ------------------------------------------------------------------ shared pieces
    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(..., D)`` -> scaled q, k, v, each ``(..., H, Dh)``."""
        h, dh = self.cfg.n_heads, self.cfg.head_dim
        qkv = F.linear(self.attention_input(x), self.qkv.weight, self.qkv.bias)
        q, k, v = qkv.view(*x.shape[:-1], 3, h, dh).unbind(-3)
        return q * self.scale, k, v

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values only: ``(B, T, D)`` -> two ``(B, H, T, Dh)``."""
        d, h, dh = self.cfg.d_model, self.cfg.n_heads, self.cfg.head_dim
        w = self.qkv.weight[d:]
        b = None if self.qkv.bias is None else self.qkv.bias[d:]
        kv = F.linear(self.attention_input(x), w, b)
        k, v = kv.unflatten(-1, (2, h, dh)).unbind(-3)
        return k.transpose(1, 2), v.transpose(1, 2)

    def project_q(self, x: Tensor) -> Tensor:
        """Scaled queries only: ``(B, T, D)`` -> ``(B, H, T, Dh)``."""
        d, h, dh = self.cfg.d_model, self.cfg.n_heads, self.cfg.head_dim
        b = None if self.qkv.bias is None else self.qkv.bias[:d]
        q = F.linear(self.attention_input(x), self.qkv.weight[:d], b)
        return (q.unflatten(-1, (h, dh)) * self.scale).transpose(1, 2)

    def attention_input(self, x: Tensor) -> Tensor:
        """What the attention projections see: ``x`` (post-LN) or ``norm1(x)`` (pre-LN)."""
        return self._norm(x, self.norm1) if self.cfg.norm_first else x

    def feed_forward(self, x: Tensor) -> Tensor:
        hidden = F.linear(x, self.ff1.weight, self.ff1.bias)
        hidden = F.gelu(hidden) if self.cfg.activation == "gelu" else F.relu(hidden)
        hidden = F.dropout(hidden, self.cfg.dropout, self.training)
        return F.dropout(F.linear(hidden, self.ff2.weight, self.ff2.bias), self.cfg.dropout, self.training)

    def finish(self, x: Tensor, attended: Tensor) -> Tensor:
        """Out-projection, residuals, norms and feed-forward.

        ``x`` is the layer input and ``attended`` the merged attention output, both
        ``(..., D)`` for the same tokens. (Functional calls rather than module calls: this
        runs once per streamed token, where call overhead is a large share of the cost.)
        """
        a = F.dropout(F.linear(attended, self.out.weight, self.out.bias), self.cfg.dropout, self.training)
        if self.cfg.norm_first:
            h = x + a
            return h + self.feed_forward(self._norm(h, self.norm2))
        h = self._norm(x + a, self.norm1)
        return self._norm(h + self.feed_forward(h), self.norm2)

    @staticmethod
    def _norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    # ------------------------------------------------------------------ regular path
    def forward(
        self,
        x: Tensor,
        key_mask: Tensor | None = None,
        query_index: Tensor | int | None = None,
    ) -> Tensor:
        """Regular attention over a window.

        Args:
            x: ``(B, T, D)`` tokens.
            key_mask: ``(B, T)`` bool, True for real tokens; others are never attended to.
            query_index: None computes all T outputs. An int or a ``(B,)`` long tensor computes
                only that token's output (its query, residual and feed-forward), which is all
                the last layer of a classifier needs.

        Returns:
            ``(B, T, D)``, or ``(B, 1, D)`` when ``query_index`` is given.
        """
        k, v = self.project_kv(x)
        rows = x if query_index is None else select_rows(x, query_index)
        q = self.project_q(rows)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        dropout = self.cfg.dropout if self.training else 0.0
        # q is pre-scaled, so SDPA must not scale again.
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=1.0)
        return self.finish(rows, o.transpose(1, 2).flatten(2))

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Copy the weights of a ``torch.nn.TransformerEncoderLayer`` (batch_first or not)."""
        attn = layer.self_attn
        act = layer.activation
        name = "gelu" if act in (F.gelu, "gelu") or isinstance(act, nn.GELU) else "relu"
        cfg = LayerConfig(
            d_model=attn.embed_dim,
            n_heads=attn.num_heads,
            d_ff=layer.linear1.out_features,
            dropout=layer.dropout.p,
            activation=name,
            norm_first=layer.norm_first,
            bias=attn.in_proj_bias is not None,
            layer_norm_eps=layer.norm1.eps,
        )
        ours = cls(cfg).to(dtype=attn.in_proj_weight.dtype)
        with torch.no_grad():
            ours.qkv.weight.copy_(attn.in_proj_weight)
            ours.out.weight.copy_(attn.out_proj.weight)
            if cfg.bias:
                ours.qkv.bias.copy_(attn.in_proj_bias)
                ours.out.bias.copy_(attn.out_proj.bias)
            for mine, theirs in [
                (ours.ff1, layer.linear1),
                (ours.ff2, layer.linear2),
                (ours.norm1, layer.norm1),
                (ours.norm2, layer.norm2),
            ]:
                mine.load_state_dict(theirs.state_dict())
        return ours


def select_rows(x: Tensor, index: Tensor | int) -> Tensor:
    """Pick one token per batch element: ``(B, T, D)`` -> ``(B, 1, D)``."""
    if isinstance(index, int):
        return x[:, index : index + 1] if index != -1 else x[:, -1:]
    b, _, d = x.shape
    return x.gather(1, index.view(b, 1, 1).expand(b, 1, d))
