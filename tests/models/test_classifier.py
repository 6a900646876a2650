"""The classifier's step logits equal its forward logits on the same window."""

from __future__ import annotations

import pytest
import torch

from coaudio.continual import EncoderConfig, LayerConfig
from coaudio.models.classifier import AudioClassifier, ModelConfig


def _model(n_layers, inputs="patches", dtype=torch.float32, window=5):
    layer = LayerConfig(d_model=32, n_heads=4, d_ff=48, dropout=0.0)
    cfg = ModelConfig(
        n_classes=5,
        inputs=inputs,
        token_dim=24,
        encoder=EncoderConfig(layer=layer, n_layers=n_layers, window=window),
    )
    model = AudioClassifier(cfg).to(dtype)
    with torch.no_grad():  # non-trivial normalisation parameters, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-9)], ids=["f32", "f64"])
@pytest.mark.parametrize("inputs", ["patches", "tokens"])
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_step_logits_equal_forward_logits(n_layers, inputs, dtype, tol):
    n = 5
    model = _model(n_layers, inputs, dtype, window=n)
    shape = (2, 3 * n + 1, 96, 64) if inputs == "patches" else (2, 3 * n + 1, 24)
    x = torch.randn(*shape, dtype=dtype)
    with torch.no_grad():
        state = model.init_state(2)
        for t in range(x.shape[1]):
            logits, state = model.step(x[:, t], state, emit_partial=True)
            lo = max(0, t - n + 1)
            expected = model(x[:, lo : t + 1], start=lo)
            assert logits.shape == (2, 5)
            assert (logits - expected).abs().max() < tol, t


def test_warm_up_returns_none_by_default_and_forward_is_repeatable():
    model = _model(1)
    x = torch.randn(1, 6, 96, 64)
    with torch.no_grad():
        state = model.init_state(1)
        outs = []
        for t in range(6):
            y, state = model.step(x[:, t], state)
            outs.append(y)
        assert [y is None for y in outs] == [True] * 4 + [False] * 2
        assert torch.equal(model(x[:, 1:], start=1), model(x[:, 1:], start=1))


def test_bad_model_config():
    with pytest.raises(ValueError, match="n_classes"):
        ModelConfig(n_classes=1)
    with pytest.raises(ValueError, match="inputs"):
        ModelConfig(n_classes=3, inputs="audio")
