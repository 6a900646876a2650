"""Pretrained front ends end to end: weights named by model, recorded by SHA-256, resolved from
the model store, streamed hop by hop exactly as the batch path computes them, and a missing
model named with the command that fetches it."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import soundfile
import torch

from coaudio.config import ConfigError
from coaudio.continual import EncoderConfig, LayerConfig
from coaudio.digests import file_digest
from coaudio.features.cache import compute
from coaudio.features.embed import VGGish
from coaudio.features.fixed import token_function
from coaudio.features.frontend import FrontendConfig
from coaudio.models.checkpoint import save_checkpoint
from coaudio.models.classifier import AudioClassifier, ModelConfig
from coaudio.online.model import load_online
from coaudio.online.session import Session
from coaudio.pretrained.frontends import record_frontend, resolve_frontend
from coaudio.pretrained.store import ModelNotFetched, fetch_model, model_file, model_sha256
from tests.downloads import musicnn_wheel
from tests.online.helpers import coaudio, tone_mix

LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models folder with musicnn installed from the real wheel (as a local file)."""
    folder = tmp_path_factory.mktemp("models")
    fetch_model("musicnn", folder, source=musicnn_wheel())
    return folder


@pytest.fixture
def in_store(models, monkeypatch):
    monkeypatch.setenv("COAUDIO_MODELS", str(models))
    return models


def _checkpoint(path, frontend: FrontendConfig, window: int = 4):
    torch.manual_seed(0)
    layer = LayerConfig(d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    config = ModelConfig(
        n_classes=len(LABELS),
        inputs="tokens",
        token_dim=frontend.token_dim,
        encoder=EncoderConfig(layer=layer, n_layers=1, window=window),
    )
    info = {"epoch": 1, "frontend": asdict(frontend)}
    save_checkpoint(path, AudioClassifier(config).eval(), LABELS, info)
    return path


def test_a_run_records_model_names_and_their_sha256(in_store, tmp_path, monkeypatch):
    recorded = record_frontend(FrontendConfig(kind="musicnn", hop_frames=62))
    assert recorded.weights == "musicnn"  # a name stays a name: the run works on any machine
    assert recorded.weights_sha256 == model_sha256("musicnn") and len(recorded.weights_sha256) == 64
    resolved = resolve_frontend(recorded)
    assert (
        resolved.weights == str(model_file("musicnn")) and resolved.weights_sha256 == recorded.weights_sha256
    )
    assert record_frontend(recorded) == recorded  # recording again (a resume) changes nothing

    weights = tmp_path / "vggish.safetensors"
    from safetensors.torch import save_file

    save_file(VGGish().state_dict(), str(weights))
    monkeypatch.chdir(tmp_path)
    by_file = record_frontend(FrontendConfig(kind="vggish", weights="vggish.safetensors"))
    assert by_file.weights == str(weights)  # absolute: config.json works from any directory
    assert by_file.weights_sha256 == file_digest(weights)


def test_other_weights_than_the_recorded_ones_are_refused(in_store):
    recorded = replace(record_frontend(FrontendConfig(kind="musicnn")), weights_sha256="0" * 64)
    with pytest.raises(ConfigError, match="coaudio models fetch musicnn --force"):
        resolve_frontend(recorded)


def test_every_fetch_installs_the_same_bytes(models, tmp_path):
    """A checkpoint records the installed file's SHA-256, so another machine's (or a --force)
    fetch must give the same file: safetensors writes its metadata in hash order, which the
    converter makes canonical."""
    again = tmp_path / "again"
    fetch_model("musicnn", again, source=musicnn_wheel())
    assert model_sha256("musicnn", dir=again) == model_sha256("musicnn", dir=models)
    assert model_file("musicnn", dir=again).read_bytes() == model_file("musicnn", dir=models).read_bytes()


def test_weights_changed_in_place_are_never_used(models, tmp_path):
    """Bytes flipped with size and mtime kept (a bad copy with cp -p): damaged, not NaN tokens."""
    import os
    import shutil

    from coaudio import digests

    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    weights = model_file("musicnn", dir=copy)
    stat = weights.stat()
    with open(weights, "r+b") as f:
        f.seek(stat.st_size - 100)
        f.write(b"\xff" * 8)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    digests.forget()  # a new process, as the next command would be
    with pytest.raises(
        ModelNotFetched, match="does not match its recorded SHA-256.*coaudio models fetch musicnn"
    ):
        model_file("musicnn", dir=copy)


def test_a_model_not_fetched_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("COAUDIO_MODELS", str(tmp_path / "empty"))
    with pytest.raises(ModelNotFetched, match="run 'coaudio models fetch musicnn'"):
        resolve_frontend(FrontendConfig(kind="musicnn"))


def test_streamed_musicnn_tokens_equal_the_batch_tokens(in_store, tmp_path):
    """Hop by hop at 44.1 kHz in odd chunks == the feature cache's tokens of the whole file."""
    frontend = FrontendConfig(kind="musicnn", hop_frames=62)
    audio = tmp_path / "clip.wav"
    soundfile.write(audio, tone_mix(6.0, 44_100)[:, 0], 44_100, subtype="FLOAT")
    resolved = resolve_frontend(frontend)
    batch = compute(audio, resolved.cache_config())  # what training reads
    assert batch.shape == (4, 753)  # 6 s: patches of 2.99 s every 0.99 s; max-pool tokens

    online = load_online(_checkpoint(tmp_path / "m.safetensors", record_frontend(frontend)))
    session = Session(online, 44_100)
    signal, rng, hops, at = soundfile.read(audio, dtype="float32")[0], np.random.default_rng(1), [], 0
    while at < len(signal):
        size = int(rng.integers(1, 9000))
        hops += session.push(signal[at : at + size])
        at += size
    hops += session.flush()
    streamed = torch.stack([h.token for h in hops])
    assert streamed.shape == batch.shape
    torch.testing.assert_close(streamed, batch, atol=1e-5, rtol=1e-5)
    assert [round(h.end_s, 3) for h in hops[:2]] == [2.992, round(2.992 + 62 * 0.016, 3)]
    # the token function's share is reported apart (evaluate --streaming times the regular model
    # on tokens, so it compares the continual step without it)
    assert all(0 < h.token_ms <= h.step_ms for h in hops)


def test_streamed_vggish_tokens_equal_the_batch_tokens(tmp_path):
    """The same for VGGish (random weights in a file: the check is the plumbing, not VGGish)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "vggish.safetensors"
    save_file(VGGish().state_dict(), str(weights))
    frontend = record_frontend(FrontendConfig(kind="vggish", weights=str(weights), hop_frames=48))
    audio = tmp_path / "clip.wav"
    soundfile.write(audio, tone_mix(3.0, 22_050)[:, 0], 22_050, subtype="FLOAT")
    batch = compute(audio, resolve_frontend(frontend).cache_config())
    online = load_online(_checkpoint(tmp_path / "m.safetensors", frontend))
    session = Session(online, 22_050)
    signal = soundfile.read(audio, dtype="float32")[0]
    hops = [h for start in range(0, len(signal), 3001) for h in session.push(signal[start : start + 3001])]
    hops += session.flush()
    torch.testing.assert_close(torch.stack([h.token for h in hops]), batch, atol=1e-5, rtol=1e-5)
    assert token_function(resolve_frontend(frontend)) is not None


def test_classify_with_a_model_not_fetched_names_the_fetch(models, tmp_path):
    """From another directory, with an empty models folder: one line, exit 1, no traceback;
    with the store: predictions."""
    import os

    checkpoint = _checkpoint(tmp_path / "m.safetensors", FrontendConfig(kind="musicnn", hop_frames=62))
    audio = tmp_path / "clip.wav"
    soundfile.write(audio, tone_mix(4.0, 16_000)[:, 0], 16_000)
    env = {**os.environ, "COAUDIO_MODELS": str(tmp_path / "nothing-here")}
    done = coaudio("classify", checkpoint, audio, env=env, timeout=300)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "run 'coaudio models fetch musicnn'" in stderr and "Traceback" not in stderr
    env["COAUDIO_MODELS"] = str(models)
    done = coaudio("classify", checkpoint, audio, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert audio.name in done.stdout.decode()


def test_train_evaluate_stream_on_musicnn_tokens_from_another_directory(models, tmp_path):
    """The gtzan-musicnn recipe end to end as a user runs it: train (tokens cached once),
    evaluate --streaming, stream; every report gives the same hop end times, and the checkpoint
    names the model and its SHA-256."""
    import csv
    import json
    import os
    import subprocess
    import sys

    from coaudio.data.synth import SynthConfig, write_dataset
    from coaudio.models.checkpoint import read_metadata

    write_dataset(tmp_path / "data", SynthConfig(per_genre=4, seconds=4.0, seed=5))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "COAUDIO_MODELS": str(models)}

    def run(*args):
        done = subprocess.run(
            [sys.executable, "-m", "coaudio", *map(str, args)],
            capture_output=True, text=True, cwd=elsewhere, env=env, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    out = tmp_path / "runs" / "m"
    sets = ["train.epochs=1", "train.threads=1", "data.frontend.hop_frames=31", "model.encoder.window=4"]
    run("train", "folder", tmp_path / "data", "--out", out, "--recipe", "gtzan-musicnn", "--jobs", 1,
        *[a for s in sets for a in ("--set", s)])  # fmt: skip
    _, _, info = read_metadata(out / "best.safetensors")
    assert info["frontend"]["weights"] == "musicnn"
    assert info["frontend"]["weights_sha256"] == model_sha256("musicnn", dir=models)
    run("evaluate", out, "--streaming", "--compare-clips", 1)
    curve = list(csv.DictReader((out / "eval" / "per-hop-test.csv").read_text().splitlines()))
    clip = json.loads((out / "config.json").read_text())["paths"]["test"][0]
    streamed = [json.loads(line)["end_s"] for line in run("stream", out, clip).stdout.splitlines()]
    assert streamed and streamed == [float(row["time_s"]) for row in curve][: len(streamed)]
    assert streamed[0] == pytest.approx(2.992)


def test_files_that_are_not_the_networks_weights_are_named_before_any_work(tmp_path):
    from safetensors.torch import save_file

    from coaudio.features.cache import FeatureConfig, check_weights

    garbage, vggish = tmp_path / "w.pth", tmp_path / "vggish.safetensors"
    garbage.write_bytes(b"not weights")
    save_file({"features.0.weight": torch.zeros(64, 1, 3, 3)}, str(vggish))
    with pytest.raises(ValueError, match="w.pth: not a musicnn safetensors weight file"):
        check_weights(FeatureConfig(kind="musicnn", weights=str(garbage), layer="max_pool"))
    with pytest.raises(ValueError, match=r"missing .* and 6\d more .*coaudio models fetch musicnn"):
        check_weights(FeatureConfig(kind="musicnn", weights=str(vggish), layer="max_pool"))
    audio = tmp_path / "a.wav"
    soundfile.write(audio, tone_mix(3.5, 16_000)[:, 0], 16_000)
    done = coaudio("features", audio, "--cache", tmp_path / "c", "--kind", "musicnn", "--weights", garbage)
    assert done.returncode == 1 and b"not a musicnn safetensors weight file" in done.stderr
    assert b"internal error" not in done.stderr and not (tmp_path / "c").exists()
