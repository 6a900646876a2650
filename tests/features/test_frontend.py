"""One front-end description: typed, strict, timed in one place, readable in its old spellings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import pytest

from coaudio.config import ConfigError, from_dict, load
from coaudio.features.cache import FeatureConfig
from coaudio.features.frontend import FrontendConfig
from coaudio.train.config import Recipe


def test_hop_times_come_from_one_place():
    f = FrontendConfig(hop_frames=25)
    assert f.hop_s == 0.25 and f.hop_start_s(4) == 1.0
    assert f.hop_end_s(0) == (95 * 160 + 400) / 16_000 == f.patch_s  # last frame's last sample
    assert f.hop_end_s(3) == f.hop_end_s(0) + 3 * f.hop_s
    assert f.window_start_s(10, window=4) == f.hop_start_s(7) and f.window_start_s(2, window=4) == 0.0


def test_kinds_and_their_rules():
    assert FrontendConfig().model_inputs == "patches" and FrontendConfig().token_dim is None
    vggish = FrontendConfig(kind="vggish", weights="/w.pth")
    assert vggish.model_inputs == "tokens" and vggish.token_dim == 128
    for bad, message in [
        ({"kind": "mfcc"}, "kind must be one of"),
        ({"weights": "w"}, "for the pretrained kinds"),
        ({"kind": "musicnn", "pca": "vggish"}, "pca is for kind = vggish"),
        ({"kind": "musicnn", "layer": "fc9"}, "layer must be one of"),
        ({"kind": "musicnn", "weights": "vggish"}, "names the vggish model; kind musicnn needs its own"),
        ({"kind": "vggish", "layer": "penultimate"}, "layer is for kind = musicnn"),
        ({"kind": "musicnn", "patch_frames": 96}, "187-frame"),
        ({"hop_frames": 0}, "hop_frames must be"),
        ({"sample_rate": 22_050}, "16000 Hz"),
    ]:
        with pytest.raises(ConfigError, match=message):
            from_dict(FrontendConfig, bad)
    with pytest.raises(ConfigError, match="model.token_norm standardises fixed tokens"):
        from_dict(Recipe, {"model": {"token_norm": True}})
    with pytest.raises(ConfigError, match="model.token_dim = 128"):
        from_dict(
            Recipe, {"data": {"frontend": {"kind": "vggish", "weights": "w"}}, "model": {"token_dim": 64}}
        )


def test_pretrained_kinds_default_to_the_model_stores_weights():
    vggish, musicnn = FrontendConfig(kind="vggish"), FrontendConfig(kind="musicnn", hop_frames=62)
    assert (vggish.weights, vggish.pca, vggish.patch_frames) == ("vggish", "", 96)
    assert (musicnn.weights, musicnn.layer, musicnn.patch_frames) == ("musicnn", "max_pool", 187)
    assert musicnn.token_dim == 753 and FrontendConfig(kind="musicnn", layer="pooled").token_dim == 1506
    # what a run records reads back as the same front end (the filled-in defaults are explicit)
    assert from_dict(FrontendConfig, asdict(musicnn)) == musicnn


def test_musicnn_times_follow_its_own_frames():
    """musicnn frames are 512 samples centred every 256 (librosa's centring, zero-padded), so
    frame k is complete at sample k * 256 + 256; a patch is 187 frames."""
    f = FrontendConfig(kind="musicnn", hop_frames=62)
    assert f.hop_s == 62 * 256 / 16_000
    assert f.patch_s == (186 * 256 + 256) / 16_000 == 2.992
    assert f.hop_end_s(5) == pytest.approx(f.patch_s + 5 * f.hop_s)


def test_old_recipe_spellings_load_as_the_new_ones(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text(
        '[data]\nfeatures = "vggish"\nvggish_weights = "/w.pth"\ntoken_hop_frames = 48\n'
        "[model]\ntoken_dim = 128\n"
    )
    new = tmp_path / "new.toml"
    new.write_text(
        '[data.frontend]\nkind = "vggish"\nweights = "/w.pth"\nhop_frames = 48\n[model]\ntoken_dim = 128\n'
    )
    assert load(Recipe, old) == load(Recipe, new)
    assert (
        load(Recipe, new, ["data.token_hop_frames=12"]).frontend.hop_frames == 12
    )  # an old --set still works
    with pytest.raises(ConfigError, match="hop_frame: unknown key"):
        load(Recipe, new, ["data.frontend.hop_frame=12"])


def test_checkpoints_store_the_front_end_and_old_ones_still_load(tmp_path):
    from coaudio.models.checkpoint import load_checkpoint, save_checkpoint
    from coaudio.online.model import load_online
    from tests.online.helpers import make_checkpoint

    model, labels, _ = load_checkpoint(make_checkpoint(tmp_path / "m.safetensors", hop_frames=20))
    assert load_online(tmp_path / "m.safetensors").frontend == FrontendConfig(hop_frames=20)
    legacy = {"hop_frames": 20, "features": "logmel", "vggish_weights": "", "vggish_pca": ""}
    save_checkpoint(tmp_path / "old.safetensors", model, labels, {"epoch": 1, "frontend": legacy})
    assert load_online(tmp_path / "old.safetensors").frontend == FrontendConfig(hop_frames=20)
    for broken, message in [
        ({**asdict(FrontendConfig()), "hop": 3}, "frontend.hop: unknown key"),
        ({"kind": "learned"}, "frontend.hop_frames: missing"),
    ]:
        save_checkpoint(tmp_path / "bad.safetensors", model, labels, {"epoch": 1, "frontend": broken})
        with pytest.raises(ConfigError, match=message):
            load_online(tmp_path / "bad.safetensors")


def test_the_cache_key_is_derived_from_the_front_end_and_stays_stable():
    assert FrontendConfig(hop_frames=10).cache_config() == FrontendConfig(hop_frames=30).cache_config()
    assert FrontendConfig(kind="vggish", weights="w", hop_frames=48).cache_config().hop_frames == 48
    # entries made before the rename keep their folder: the hash still says patch_hop_frames
    text = json.dumps(
        {"version": 2, "kind": "logmel", "patch_hop_frames": 96, "vggish_weights": "", "vggish_pca": ""},
        sort_keys=True,
    )
    assert FeatureConfig().key() == hashlib.sha256(text.encode()).hexdigest()[:16]
