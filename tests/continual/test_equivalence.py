"""Step output == regular output on the same window, at every step, past every ring wrap."""

from __future__ import annotations

import pytest
import torch

from tests.continual.helpers import make_encoder, stream, windows_of

SHAPES = {
    # name: (window, d_model, heads, d_ff, extra layer options)
    "tiny": (5, 16, 2, 24, {}),
    "odd-pre-ln-relu": (7, 24, 3, 40, {"norm_first": True, "activation": "relu"}),
    "no-bias": (9, 32, 4, 32, {"bias": False}),
    "gtzan": (120, 192, 16, 192, {}),
}
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-5}


# (layers, dtype, kernel): "torch" everywhere; "auto" where it means the fused C kernels
# (float32: the whole step for one layer, the retroactive update for deeper encoders).
CASES = [(L, dt, "torch") for L in (1, 2, 3) for dt in (torch.float64, torch.float32)]
CASES += [(L, torch.float32, "auto") for L in (1, 2, 3)]


@pytest.mark.parametrize(
    "n_layers,dtype,kernel", CASES, ids=[f"{c[0]}-{str(c[1])[6:]}-{c[2]}" for c in CASES]
)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_step_matches_regular_window(shape, n_layers, dtype, kernel):
    n, d, h, f, extra = SHAPES[shape]
    encoder = make_encoder(n_layers, n, d, h, f, dtype=dtype, **extra)
    steps = 3 * n + 2  # wraps the ring buffer three times
    x = torch.randn(1, steps, d, dtype=dtype)
    with torch.no_grad():
        outputs = stream(encoder, x, kernel=kernel)
        windows, starts = windows_of(x, n, first_end=n - 1)
        expected = encoder(windows, start=starts)  # (W, D), one regular forward per window
    assert all(y is None for y in outputs[: n - 1])
    got = torch.cat(outputs[n - 1 :])
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < TOLERANCE[dtype]


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_warm_up_outputs_equal_shorter_and_padded_windows(n_layers):
    n, d = 6, 16
    encoder = make_encoder(n_layers, n, d, 2, 24)
    x = torch.randn(1, 2 * n, d, dtype=torch.float64)
    with torch.no_grad():
        outputs = stream(encoder, x, emit_partial=True)
        for t in range(n - 1):
            shorter = encoder(x[:, : t + 1])
            assert (outputs[t] - shorter).abs().max() < 1e-9
            # the same window left-padded to n tokens, padding masked out
            pad = n - (t + 1)
            padded = torch.cat([torch.zeros(1, pad, d, dtype=x.dtype), x[:, : t + 1]], dim=1)
            mask = torch.arange(n)[None] >= pad
            assert (outputs[t] - encoder(padded, start=-pad, key_mask=mask)).abs().max() < 1e-9
        for t in range(n - 1, 2 * n):
            full = encoder(x[:, t - n + 1 : t + 1], start=t - n + 1)
            assert (outputs[t] - full).abs().max() < 1e-9


def test_window_of_one_token():
    encoder = make_encoder(2, 1, 16, 2, 24)
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        for t, y in enumerate(stream(encoder, x)):
            assert (y - encoder(x[:, t : t + 1], start=t)).abs().max() < 1e-9


def test_absolute_positions_refuse_to_step():
    from coaudio.continual import ContinualEncoder, EncoderConfig, LayerConfig

    cfg = EncoderConfig(layer=LayerConfig(d_model=16, n_heads=2), window=4, positional="absolute")
    encoder = ContinualEncoder(cfg)
    encoder(torch.randn(2, 4, 16))  # the regular baseline works
    with pytest.raises(ValueError, match="recycling"):
        encoder.step(torch.randn(1, 16), encoder.init_state(1))
