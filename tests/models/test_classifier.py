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


def test_standardised_tokens_step_like_forward_and_travel_in_the_checkpoint(tmp_path):
    """token_norm: fixed per-dimension statistics, applied on every path, saved with the model."""
    from coaudio.models.checkpoint import load_checkpoint, save_checkpoint

    layer = LayerConfig(d_model=32, n_heads=4, d_ff=48, dropout=0.0)
    cfg = ModelConfig(
        n_classes=3,
        inputs="tokens",
        token_dim=6,
        token_norm=True,
        encoder=EncoderConfig(layer=layer, window=4),
    )
    model = AudioClassifier(cfg).double().eval()
    scale = torch.tensor([1e-2, 1.0, 1e2, 3.0, 50.0, 0.5], dtype=torch.float64)
    tokens = torch.randn(200, 6, dtype=torch.float64) * scale + 7.0
    model.set_token_stats(tokens)
    standard = (tokens - model.token_mean) / model.token_std
    assert standard.mean(0).abs().max() < 1e-5 and (standard.std(0, correction=0) - 1).abs().max() < 1e-4
    x = tokens[None, :12]
    state = model.init_state(1)
    with torch.no_grad():
        for t in range(12):
            logits, state = model.step(x[:, t], state, emit_partial=True)
            lo = max(0, t - 3)
            assert (logits - model(x[:, lo : t + 1], start=lo)).abs().max() < 1e-9
    save_checkpoint(tmp_path / "m.safetensors", model.float(), ["a", "b", "c"])
    loaded, _, _ = load_checkpoint(tmp_path / "m.safetensors")
    assert torch.equal(loaded.token_std, model.token_std) and torch.equal(loaded.token_mean, model.token_mean)
    with pytest.raises(ValueError, match="token_norm"):
        ModelConfig(n_classes=3, token_norm=True)
