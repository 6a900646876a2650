"""Our encoder layer is the standard one: same outputs as torch's, real GELU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from coaudio.continual import EncoderLayer, LayerConfig


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-ln", "pre-ln"])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_forward_equals_torch_transformer_encoder_layer(norm_first, activation):
    theirs = (
        nn.TransformerEncoderLayer(
            32, 4, 48, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
        )
        .double()
        .eval()
    )
    ours = EncoderLayer.from_torch(theirs).eval()
    assert ours.cfg.activation == activation
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, :3] = False
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)
        # key padding: torch marks padding with True, we mark real tokens with True
        expected = theirs(x, src_key_padding_mask=~mask)
        got = ours(x, key_mask=mask)
        torch.testing.assert_close(got[1, 3:], expected[1, 3:], rtol=0, atol=1e-12)
        torch.testing.assert_close(ours(x, query_index=-1)[:, 0], theirs(x)[:, -1], rtol=0, atol=1e-12)


def test_gelu_is_gelu_not_relu():
    cfg = LayerConfig(d_model=16, n_heads=2, d_ff=16, dropout=0.0, activation="gelu")
    layer = EncoderLayer(cfg).double()
    h = torch.linspace(-3, 3, 16, dtype=torch.float64)
    with torch.no_grad():  # identity linear maps around the activation
        for linear in (layer.ff1, layer.ff2):
            linear.weight.copy_(torch.eye(16))
            linear.bias.zero_()
    got = layer.feed_forward(h)
    torch.testing.assert_close(got, nn.functional.gelu(h), rtol=0, atol=1e-15)
    assert got[0] < 0  # ReLU would give exactly 0 here


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="divisible"):
        LayerConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="activation"):
        LayerConfig(activation="swish")
