"""Early stopping on validation accuracy, and training on fixed (melstats) tokens."""

from __future__ import annotations

import json

import pytest
import torch

from coaudio.config import from_dict
from coaudio.features.fixed import patch_stats
from coaudio.train.config import Recipe
from coaudio.train.data import Clip
from coaudio.train.loop import train
from coaudio.train.selection import stale_epochs, stopped_early


def _recipe(**train_options) -> Recipe:
    return from_dict(
        Recipe,
        {
            "data": {"frontend": {"kind": "melstats"}, "windows_per_clip": 2},
            "model": {
                "token_dim": 128,
                "encoder": {"window": 6, "layer": {"d_model": 16, "n_heads": 2, "d_ff": 32}},
            },
            "train": {"threads": 1, "batch_size": 8, **train_options},
        },
    )


def _clips(count: int, seed: int) -> list[Clip]:
    """Clips whose tokens do not tell their (random) labels: validation accuracy wanders."""
    g = torch.Generator().manual_seed(seed)
    return [
        Clip(torch.randn(8, 128, generator=g), int(torch.randint(3, (1,), generator=g)), f"c{seed}-{i}")
        for i in range(count)
    ]


def test_stale_epochs_count_from_the_first_best():
    history = [{"valid_accuracy": a} for a in (0.2, 0.5, 0.4, 0.5, 0.3)]
    assert stale_epochs(history) == 3  # a tie does not renew patience
    assert stale_epochs([]) == 0


def test_a_run_stops_when_validation_stops_improving_and_stays_stopped(tmp_path):
    splits = {"train": _clips(12, 0), "valid": _clips(6, 1)}
    labels = ["a", "b", "c"]
    history = train(_recipe(epochs=40, patience=2), splits, labels, tmp_path / "run", data_root=tmp_path)
    assert len(history) < 40 and stale_epochs(history) == 2
    reason = stopped_early(tmp_path / "run", 2)
    assert reason is not None and "no better validation accuracy for 2 epoch(s)" in reason
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, len(history) + 1))
    # resuming a run that stopped early trains nothing more; a larger patience continues it
    again = train(_recipe(epochs=40, patience=2), splits, labels, tmp_path / "run", resume=True)
    assert again == history
    longer = train(
        _recipe(epochs=len(history) + 1, patience=0), splits, labels, tmp_path / "run", resume=True
    )
    assert len(longer) == len(history) + 1


def test_melstats_tokens_are_band_means_and_deviations():
    patches = torch.randn(3, 96, 64, dtype=torch.float64)
    tokens = patch_stats(patches)
    assert tokens.shape == (3, 128)
    torch.testing.assert_close(tokens[:, :64], patches.mean(dim=1))
    torch.testing.assert_close(tokens[:, 64:], patches.std(dim=1, correction=0))


def test_selecting_on_loss_keeps_the_lowest_validation_loss():
    from coaudio.train.selection import best_epoch, early_stop_reason

    history = [
        {"epoch": e + 1, "valid_accuracy": a, "valid_loss": loss}
        for e, (a, loss) in enumerate([(0.5, 1.2), (0.7, 1.0), (0.6, 0.8), (0.7, 0.9)])
    ]
    assert best_epoch(history, "accuracy") == 1 and best_epoch(history, "loss") == 2
    assert stale_epochs(history, "loss") == 1
    assert early_stop_reason(history, "loss") == (
        "no better validation loss for 1 epoch(s) (best 0.800 after epoch 3)"
    )
    with pytest.raises(ValueError, match="select must be one of"):
        _recipe(select="f1")
    with pytest.raises(ValueError, match="grad_clip must be >= 0"):
        _recipe(grad_clip=-1.0)


def test_warm_up_and_loss_selection_train_and_write_valid_loss(tmp_path):
    splits = {"train": _clips(12, 0), "valid": _clips(6, 1)}
    recipe = _recipe(epochs=3, warmup_epochs=2, select="loss")
    history = train(recipe, splits, ["a", "b", "c"], tmp_path / "run", data_root=tmp_path)
    assert all(h["valid_loss"] > 0 for h in history)
    assert "valid_loss" in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_its_last_epoch(tmp_path):
    from coaudio.config import ConfigError
    from coaudio.train.loop import TrainingDiverged

    splits = {"train": _clips(12, 0), "valid": _clips(6, 1)}
    with pytest.raises(TrainingDiverged, match=r"the training loss became (nan|inf) in epoch \d+"):
        train(_recipe(epochs=5, lr=1e30), splits, ["a", "b", "c"], tmp_path / "run", data_root=tmp_path)
    with pytest.raises(ConfigError, match="expected a finite number"):
        _recipe(lr=float("inf"))
    with pytest.raises(ValueError, match=r"gain_db must be in \[0, 40.0\]"):
        from_dict(Recipe, {"train": {"augment": {"gain_db": 1000.0}}})
