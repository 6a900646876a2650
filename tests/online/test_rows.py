"""coaudio.online.rows: gathering streams' rows of shared batch states equals stacking their
own states, and the same streams in the same order pass their batch state on untouched."""

from __future__ import annotations

import torch

from coaudio.continual import EncoderConfig, LayerConfig, stack_states, unstack_states
from coaudio.continual.encoder import ContinualEncoder
from coaudio.online.rows import gather

LAYER = LayerConfig(d_model=16, n_heads=2, d_ff=16, dropout=0.0)


def _batch_state(encoder: ContinualEncoder, batch: int, steps: int, seed: int):
    """A batch state after ``steps`` random tokens (every row different)."""
    torch.manual_seed(seed)
    state = encoder.init_state(batch)
    with torch.no_grad():
        for _ in range(steps):
            _, state = encoder.step(torch.randn(batch, encoder.cfg.layer.d_model), state, emit_partial=True)
    return state


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_gather_equals_stacking_each_streams_own_state():
    for layers in (1, 2):  # the single-output state and the retroactive one
        cfg = EncoderConfig(layer=LAYER, n_layers=layers, window=4)
        encoder = ContinualEncoder(cfg).eval()
        a, b = _batch_state(encoder, 5, 3, seed=1), _batch_state(encoder, 3, 6, seed=2)
        own = {"a": unstack_states(a), "b": unstack_states(b)}
        # runs of one batch state: consecutive rows (a slice), scattered rows (index_select),
        # a stream alone, back to the first state again
        picks = [("a", 1), ("a", 2), ("b", 2), ("b", 0), ("a", 4), ("a", 0)]
        states = [a if name == "a" else b for name, _ in picks]
        rows = [row for _, row in picks]
        got = gather(states, rows, min_t=3)
        expected = stack_states([own[name][row] for name, row in picks])
        assert _equal(got.t, expected.t) and _equal(got.layers, expected.layers)
        assert got.min_t == 3 == expected.min_t


def test_the_same_streams_in_row_order_pass_their_state_on():
    cfg = EncoderConfig(layer=LAYER, window=4)
    state = _batch_state(ContinualEncoder(cfg).eval(), 4, 2, seed=3)
    assert gather([state] * 4, [0, 1, 2, 3], min_t=2) is state
    moved = gather([state] * 4, [0, 1, 2, 3], min_t=1)  # only the count differs: no copy
    assert moved.min_t == 1 and moved.t is state.t
    part = gather([state] * 2, [1, 2], min_t=2)  # consecutive rows: views, no copy
    assert part.t.data_ptr() == state.t[1:].data_ptr() and torch.equal(part.t, state.t[1:3])
