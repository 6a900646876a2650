"""FLOPs: FlopCounterMode and the analytic formulas agree (within 5%; in fact exactly)."""

from __future__ import annotations

import pytest
import torch

from coaudio.continual.flops import analytic_flops, counted_flops
from tests.continual.helpers import make_encoder


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("n,d,h,f", [(120, 192, 16, 192), (32, 128, 4, 256)])
def test_counter_agrees_with_formulas(n_layers, n, d, h, f):
    encoder = make_encoder(n_layers, n, d, h, f, dtype=torch.float32)
    x = torch.randn(1, n, d)
    with torch.inference_mode():
        state = encoder.init_state(1)
        for t in range(n + 1):  # steady state: every step evicts a token
            _, state = encoder.step(x[:, t % n], state)
        counted = {
            "regular": counted_flops(lambda: encoder(x, last_only=False)),
            "regular_last": counted_flops(lambda: encoder(x)),
            # the counter sees torch operations, not the fused C kernel: count the torch step
            "continual": counted_flops(lambda: encoder.step(x[:, 0], state, kernel="torch")),
        }
    for mode, value in counted.items():
        expected = analytic_flops(encoder.cfg, mode)
        assert abs(value - expected) <= 0.05 * expected, (mode, value, expected)


def test_one_block_gtzan_ratio_is_the_window_length():
    encoder = make_encoder(1, 120, 192, 16, 192, dtype=torch.float32)
    ratio = analytic_flops(encoder.cfg, "regular") / analytic_flops(encoder.cfg, "continual")
    assert ratio == pytest.approx(120.0)  # >= the paper's 51.5x
