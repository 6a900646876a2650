"""Checkpoints describe themselves, load without pickles, and refuse other configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from coaudio.config import ConfigError
from coaudio.continual import EncoderConfig, LayerConfig
from coaudio.models.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from coaudio.models.classifier import AudioClassifier, ModelConfig


def _config(**encoder):
    layer = LayerConfig(d_model=32, n_heads=4, d_ff=48, dropout=0.0)
    return ModelConfig(n_classes=3, encoder=EncoderConfig(layer=layer, window=6, **encoder))


def test_round_trip(tmp_path):
    model = AudioClassifier(_config(n_layers=2)).eval()
    path = tmp_path / "ckpt" / "best.safetensors"
    save_checkpoint(path, model, ["a", "b", "c"], {"epoch": 4, "valid_accuracy": 0.75})
    loaded, labels, info = load_checkpoint(path, expected=_config(n_layers=2))
    assert labels == ["a", "b", "c"] and info == {"epoch": 4, "valid_accuracy": 0.75}
    x = torch.randn(2, 6, 96, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert read_metadata(path)[0] == model.cfg
    assert not list(path.parent.glob("*.partial"))


def test_another_config_is_refused_with_the_differences(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, AudioClassifier(_config(n_layers=1)).eval(), ["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"encoder.n_layers: checkpoint 1, expected 2"):
        load_checkpoint(path, expected=_config(n_layers=2))


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a coaudio checkpoint"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a coaudio checkpoint"):
        load_checkpoint(foreign)
    model = AudioClassifier(_config())
    with pytest.raises(ValueError, match="labels"):
        save_checkpoint(tmp_path / "x.safetensors", model, ["only one"])


def test_saving_over_an_existing_checkpoint_is_atomic(tmp_path):
    path = tmp_path / "last.safetensors"
    first = AudioClassifier(_config()).eval()
    save_checkpoint(path, first, ["a", "b", "c"], {"epoch": 1})
    second = AudioClassifier(dataclasses.replace(_config())).eval()
    save_checkpoint(path, second, ["a", "b", "c"], {"epoch": 2})
    assert read_metadata(path)[2] == {"epoch": 2}
