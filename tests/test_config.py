"""Strict config loading: unknown keys and wrong types are errors; overrides apply."""

from __future__ import annotations

import dataclasses

import pytest

from coaudio.config import ConfigError, from_dict, load, parse_overrides, to_dict
from coaudio.continual import EncoderConfig, LayerConfig


@dataclasses.dataclass(frozen=True)
class Train:
    lr: float = 1e-3
    epochs: int = 10
    name: str = "run"
    windows: tuple[int, ...] = (8, 16)


@dataclasses.dataclass(frozen=True)
class Recipe:
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    train: Train = dataclasses.field(default_factory=Train)


def test_toml_with_overrides_round_trips(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(
        "[encoder]\nn_layers = 2\nwindow = 60\n[encoder.layer]\nd_model = 64\nn_heads = 4\n"
        "[train]\nlr = 3e-4\nwindows = [4, 8]\n"
    )
    cfg = load(Recipe, path, ["train.epochs=3", "encoder.layer.activation=relu", "train.lr=1"])
    assert cfg.encoder == EncoderConfig(
        layer=LayerConfig(d_model=64, n_heads=4, activation="relu"), n_layers=2, window=60
    )
    assert cfg.train == Train(lr=1.0, epochs=3, windows=(4, 8))
    assert from_dict(Recipe, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "text,message",
    [
        ("[train]\nlearning_rate = 1\n", "train.learning_rate: unknown key"),
        ("[train]\nepochs = 2.5\n", "train.epochs: expected int"),
        ("[encoder.layer]\nd_model = 30\nn_heads = 4\n", "divisible"),
        ("[train\n", "not valid TOML"),
        ("train = 3\n", "train: expected a table"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(Recipe, path)


def test_overrides_parse_toml_literals():
    assert parse_overrides(["a.b=true", "a.c=12", 'a.d="x y"', "e=[1, 2]", "f=plain"]) == {
        "a": {"b": True, "c": 12, "d": "x y"},
        "e": [1, 2],
        "f": "plain",
    }
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["novalue"])
    with pytest.raises(ConfigError, match="no such config file"):
        load(Recipe, "/nonexistent.toml")
