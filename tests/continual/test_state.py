"""State is explicit: never mutated, batchable, and forward has no side effects."""

from __future__ import annotations

import pytest
import torch

from coaudio.continual import stack_states, unstack_states
from coaudio.continual.state import map_leaves
from tests.continual.helpers import make_encoder, stream


def _clone(state):
    return map_leaves(lambda xs: xs[0].clone(), [state])


def _assert_same(a, b):
    map_leaves(lambda xs: torch.testing.assert_close(xs[0], xs[1], rtol=0, atol=0), [a, b])


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_step_does_not_mutate_its_input_state(n_layers):
    n = 4
    encoder = make_encoder(n_layers, n)
    x = torch.randn(1, 3 * n, 32, dtype=torch.float64)
    state = encoder.init_state(1)
    with torch.no_grad():
        for t in range(x.shape[1]):  # covers warm-up, the first wrap and steady state
            before = _clone(state)
            first, _ = encoder.step(x[:, t], state, emit_partial=True)
            _assert_same(state, before)
            again, state = encoder.step(x[:, t], state, emit_partial=True)  # same input again
            torch.testing.assert_close(first, again, rtol=0, atol=0)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_forward_is_idempotent_and_has_no_side_effects(n_layers):
    encoder = make_encoder(n_layers, 6)
    params = {k: v.clone() for k, v in encoder.state_dict().items()}
    x = torch.randn(3, 6, 32, dtype=torch.float64)
    with torch.no_grad():
        a = encoder(x, start=11)
        b = encoder(x, start=11)
    assert torch.equal(a, b)
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in params.items())


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_batch_of_streams_equals_streams_one_by_one(n_layers):
    n = 5
    encoder = make_encoder(n_layers, n)
    x = torch.randn(3, 4 * n, 32, dtype=torch.float64)
    with torch.no_grad():
        batched = stream(encoder, x, emit_partial=True)
        for b in range(3):
            alone = stream(encoder, x[b : b + 1], emit_partial=True)
            for t, y in enumerate(alone):
                assert (batched[t][b : b + 1] - y).abs().max() < 1e-12


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_stack_unstack_round_trip_and_streams_at_different_phases(n_layers):
    n = 5
    encoder = make_encoder(n_layers, n)
    a = torch.randn(1, 30, 32, dtype=torch.float64)
    b = torch.randn(1, 30, 32, dtype=torch.float64)
    with torch.no_grad():
        sa, sb = encoder.init_state(1), encoder.init_state(1)
        for t in range(2):  # stream a is still warming up
            _, sa = encoder.step(a[:, t], sa)
        for t in range(13):  # stream b has wrapped its ring twice
            _, sb = encoder.step(b[:, t], sb)
        both = stack_states([sa, sb])
        assert both.min_t == 2
        parts = unstack_states(both)
        _assert_same(parts[0], sa)
        _assert_same(parts[1], sb)
        assert [p.min_t for p in parts] == [2, 13]
        for k in range(8):  # step both together, compare with stepping each alone
            y, both = encoder.step(torch.cat([a[:, 2 + k], b[:, 13 + k]]), both, emit_partial=True)
            ya, sa = encoder.step(a[:, 2 + k], sa, emit_partial=True)
            yb, sb = encoder.step(b[:, 13 + k], sb, emit_partial=True)
            assert (y[0] - ya[0]).abs().max() < 1e-12
            assert (y[1] - yb[0]).abs().max() < 1e-12


def test_init_state_follows_weights_and_arguments():
    encoder = make_encoder(2, 4, dtype=torch.float32)
    state = encoder.init_state(3)
    assert state.t.tolist() == [0, 0, 0] and state.min_t == 0
    assert state.layers[0].q.shape == (3, 4, 4, 8)  # (B, H, n, Dh)
    assert state.layers[0].q.dtype == torch.float32
    assert encoder.init_state(2, dtype=torch.float64).layers[0].x.dtype == torch.float64


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_steps_with_gradients_enabled_record_no_graph(n_layers):
    """A long stream stepped with autograd on must not chain its steps into one graph."""
    encoder = make_encoder(n_layers, 4)
    x = torch.randn(1, 12, 32, dtype=torch.float64)
    state, quiet = encoder.init_state(1), encoder.init_state(1)
    assert torch.is_grad_enabled()
    for t in range(x.shape[1]):
        y, state = encoder.step(x[:, t], state, emit_partial=True)
        with torch.no_grad():
            expected, quiet = encoder.step(x[:, t], quiet, emit_partial=True)
        assert not y.requires_grad and y.grad_fn is None
        torch.testing.assert_close(y, expected, rtol=0, atol=0)
    map_leaves(lambda xs: None if xs[0].grad_fn is None else pytest.fail("state carries a graph"), [state])
