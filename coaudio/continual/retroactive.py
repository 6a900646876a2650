"""Continual retroactive (CoRe) attention step: all n outputs of the window, updated in O(n*D).

When token t arrives and token t-n leaves, every row i of the attention matrix changes by one
new column (key t) and loses one old column (key t-n); one new row (query t) appears::

    row i:   den_i <- den_i - exp(q_i.k_old) + exp(q_i.k_t)
             num_i <- num_i - exp(q_i.k_old) v_old + exp(q_i.k_t) v_t
    row t:   computed from scratch over the n keys of the new window
    output:  num_i / den_i for every row

The reference implementation exponentiates raw logits and subtracts, which overflows above
logit ~88 (float32) and loses all precision when a dominant key leaves the window. Here:

* each row keeps a log offset ``m_i`` (its running max), so every exponent is <= 0;
* each row tracks ``mass_i``, the total magnitude of all terms that went into ``den_i`` since
  it was last computed exactly. Rounding error of ``den_i`` and ``num_i`` is bounded by
  ``eps * mass_i``, so the relative error of the row's output is bounded by
  ``eps * mass_i / den_i``. A row whose ``den_i < RECOMPUTE_BELOW * mass_i`` (a dominant key
  left) is recomputed exactly from its cached query and the current window, which also
  resets ``m_i``. Since ``mass_i >= 1`` always holds, ``den_i`` never gets near zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from coaudio.continual.layer import EncoderLayer
from coaudio.continual.single_output import StepContext, read_slot, write_slot
from coaudio.continual.state import RetroactiveState

# Recompute a row exactly once cancellation has removed more than 7/8 of its mass: the
# relative error of any row output then stays below about 8 * (a few) * machine epsilon.
RECOMPUTE_BELOW = 1.0 / 8.0


def init_retroactive_state(
    layer: EncoderLayer, batch_size: int, window: int, device, dtype
) -> RetroactiveState:
    """Zero rings; rows of empty slots start finite (den = mass = 1) and stay masked."""
    h, dh, d = layer.cfg.n_heads, layer.cfg.head_dim, layer.cfg.d_model

    def zeros(*shape):
        return torch.zeros(*shape, device=device, dtype=dtype)

    def ones(*shape):
        return torch.ones(*shape, device=device, dtype=dtype)

    b, n = batch_size, window
    return RetroactiveState(
        x=zeros(b, n, d),
        q=zeros(b, h, n, dh),
        k=zeros(b, h, n, dh),
        v=zeros(b, h, n, dh),
        m=zeros(b, h, n),
        den=ones(b, h, n),
        num=zeros(b, h, n, dh),
        mass=ones(b, h, n),
    )


def _exact_rows(q: Tensor, k: Tensor, v: Tensor, pad: Tensor | None):
    """Exact softmax statistics of rows: q ``(R, Dh)`` against k, v ``(R, n, Dh)``.

    Returns the row max ``(R,)``, denominator ``(R,)`` and numerator ``(R, Dh)``.
    """
    logits = torch.matmul(k, q.unsqueeze(-1)).squeeze(-1)  # (R, n)
    if pad is not None:
        logits = logits.masked_fill(pad, float("-inf"))
    m = logits.amax(dim=-1)
    e = torch.exp(logits - m.unsqueeze(-1))
    return m, e.sum(dim=-1), torch.matmul(e.unsqueeze(-2), v).squeeze(-2)


def retroactive_step(
    layer: EncoderLayer, x_t: Tensor, state: RetroactiveState, ctx: StepContext
) -> tuple[Tensor, RetroactiveState]:
    """One CoRe step.

    Args:
        layer: the layer whose weights are used.
        x_t: ``(B, D)`` newest token (positions already added).
        state: the layer's window statistics; not modified.
        ctx: slot and masks of this step.

    Returns:
        ``(B, n, D)`` updated outputs of every token of the window, in ring-slot order, and
        the new state.
    """
    q, k, v = layer.project_qkv(x_t)  # each (B, H, Dh)
    k_old = read_slot(state.k, ctx, slot_dim=2)  # the leaving token, (B, H, Dh)
    v_old = read_slot(state.v, ctx, slot_dim=2)
    x_ring = write_slot(state.x, ctx, x_t, slot_dim=1)
    q_ring = write_slot(state.q, ctx, q, slot_dim=2)
    k_ring = write_slot(state.k, ctx, k, slot_dim=2)
    v_ring = write_slot(state.v, ctx, v, slot_dim=2)

    # New and leaving columns for every row: (B, H, n, Dh) @ (B, H, Dh, 2) -> (B, H, n, 2).
    l_new, l_old = torch.matmul(q_ring, torch.stack([k, k_old], dim=-1)).unbind(-1)
    m = torch.maximum(state.m, l_new)
    rescale = torch.exp(state.m - m)
    e_new = torch.exp(l_new - m)
    e_old = torch.exp(l_old - m)
    if ctx.evicting is not None:  # nothing leaves while a stream is still filling its window
        e_old = e_old * ctx.evicting[:, None, None]
    den = state.den * rescale + e_new - e_old
    mass = state.mass * rescale + e_new + e_old
    weights = torch.stack([e_new, -e_old], dim=-1)  # (B, H, n, 2)
    num = state.num * rescale.unsqueeze(-1) + torch.matmul(weights, torch.stack([v, v_old], dim=-2))

    # The newest row, exact over the new window. den/num/m/mass are fresh tensors, so these
    # in-place writes cannot touch the caller's state.
    pad = None if ctx.key_mask is None else ~ctx.key_mask  # (B, n)
    row_pad = None if pad is None else pad[:, None, :].expand(-1, k_ring.shape[1], -1)
    m_row, den_row, num_row = _exact_rows(q, k_ring, v_ring, row_pad)
    b = torch.arange(x_t.shape[0], device=x_t.device)
    s = ctx.slot
    m[b, :, s], den[b, :, s], mass[b, :, s], num[b, :, s] = m_row, den_row, den_row, num_row

    stale = den < RECOMPUTE_BELOW * mass  # (B, H, n)
    if pad is not None:
        stale &= ~pad[:, None, :]  # empty slots hold no row worth fixing
    if bool(stale.any()):
        bi, hi, ii = stale.nonzero(as_tuple=True)
        pad_r = None if pad is None else pad[bi]
        m_r, den_r, num_r = _exact_rows(q_ring[bi, hi, ii], k_ring[bi, hi], v_ring[bi, hi], pad_r)
        m[bi, hi, ii], den[bi, hi, ii], mass[bi, hi, ii], num[bi, hi, ii] = m_r, den_r, den_r, num_r

    attended = (num / den.unsqueeze(-1)).transpose(1, 2).flatten(2)  # (B, n, D)
    rows = layer.finish(x_ring, attended)
    new_state = RetroactiveState(x_ring, q_ring, k_ring, v_ring, m, den, num, mass)
    return rows, new_state
