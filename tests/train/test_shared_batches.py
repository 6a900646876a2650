"""Shared batches (each token embedded once) compute what plain per-window batches compute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coaudio.continual import EncoderConfig, LayerConfig
from coaudio.models.classifier import AudioClassifier, ModelConfig
from coaudio.train.data import Clip, batch, evaluation_windows, shared_batch, training_windows


def _clips(inputs: str, count: int = 5, seed: int = 0) -> list[Clip]:
    g = torch.Generator().manual_seed(seed)
    shape = (96, 64) if inputs == "patches" else (16,)
    return [
        Clip(torch.randn(int(torch.randint(3, 20, (1,), generator=g)), *shape, generator=g), i % 3, str(i))
        for i in range(count)
    ]


def _model(inputs: str, dtype=torch.float64) -> AudioClassifier:
    torch.manual_seed(0)
    layer = LayerConfig(d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    cfg = ModelConfig(3, inputs=inputs, token_dim=16, embedder_width=4, encoder=EncoderConfig(layer, 1, 8))
    return AudioClassifier(cfg).to(dtype)


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("inputs", ["patches", "tokens"])
def test_shared_batch_gives_the_plain_batch_logits_and_gradients(inputs):
    clips = _clips(inputs)
    windows = training_windows(clips, 8, 1, 4, torch.Generator().manual_seed(1))
    model = _model(inputs)
    x, mask, start, labels = batch(clips, windows)
    plain = model(x.double(), start=start, key_mask=mask)
    b = shared_batch(clips, windows)
    shared = model(b.tokens.double(), start=b.start, key_mask=b.mask, index=b.index)
    torch.testing.assert_close(shared, plain, rtol=0, atol=1e-9)
    assert torch.equal(b.labels, labels) and torch.equal(b.mask, mask) and torch.equal(b.start, start)
    expected = _grads(model, F.cross_entropy(plain, labels))
    got = _grads(
        model,
        F.cross_entropy(model(b.tokens.double(), start=b.start, key_mask=b.mask, index=b.index), labels),
    )
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-9, msg=name)


def test_a_shared_batch_holds_each_needed_token_once():
    clips = _clips("tokens", count=3)
    windows = [w for ws in evaluation_windows(clips, 8, 1) for w in ws]
    b = shared_batch(clips, windows)
    assert b.tokens.shape[0] == sum(c.tokens.shape[0] for c in clips)  # every token, once
    assert b.owner.tolist() == [i for i, c in enumerate(clips) for _ in range(c.tokens.shape[0])]
    x, _, _, _ = batch(clips, windows)
    torch.testing.assert_close(b.tokens[b.index] * b.mask[..., None], x * b.mask[..., None])


def test_training_windows_keep_each_clips_windows_together():
    clips = _clips("tokens", count=6)
    windows = training_windows(clips, 8, 1, 4, torch.Generator().manual_seed(3))
    order = [w.clip for w in windows]
    runs = [order[i : i + 4] for i in range(0, len(order), 4)]
    assert all(len(set(run)) == 1 for run in runs)
    assert sorted(run[0] for run in runs) == list(range(6))
    again = training_windows(clips, 8, 1, 4, torch.Generator().manual_seed(3))
    assert windows == again


def test_mixup_of_a_window_with_itself_changes_nothing_and_with_others_stays_finite():
    clips = _clips("tokens")
    windows = training_windows(clips, 8, 1, 2, torch.Generator().manual_seed(1))
    model = _model("tokens")
    b = shared_batch(clips, windows)
    args = dict(start=b.start, key_mask=b.mask, index=b.index)
    plain = model(b.tokens.double(), **args)
    itself = model(b.tokens.double(), **args, mix=(torch.arange(b.rows), torch.full((b.rows,), 0.7)))
    torch.testing.assert_close(itself, plain, rtol=0, atol=1e-9)
    mixed = model(b.tokens.double(), **args, mix=(torch.randperm(b.rows), torch.full((b.rows,), 0.7)))
    assert torch.isfinite(mixed).all() and not torch.allclose(mixed, plain)
