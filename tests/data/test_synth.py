"""The built-in synthetic dataset: deterministic, well-formed, and genres that differ."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import soundfile
import torch

from coaudio.data.synth import GENRES, SynthConfig, synthesize, write_dataset
from coaudio.features.cache import find_audio
from coaudio.features.logmel import log_mel


def test_same_seed_same_clip_other_seed_other_clip():
    a = synthesize("waltz", 3, seconds=2.0, seed=7)
    assert np.array_equal(a, synthesize("waltz", 3, seconds=2.0, seed=7))
    assert not np.array_equal(a, synthesize("waltz", 3, seconds=2.0, seed=8))
    assert not np.array_equal(a, synthesize("waltz", 4, seconds=2.0, seed=7))


def test_clips_are_well_formed():
    for genre in GENRES:
        clip = synthesize(genre, 0, seconds=3.0)
        assert clip.dtype == np.float32 and clip.shape == (48000,)
        assert np.isfinite(clip).all() and 0.4 < np.abs(clip).max() <= 0.9


def test_genres_are_separable_by_their_average_spectrum():
    feats = {g: torch.stack([log_mel(synthesize(g, i, seconds=4.0)).mean(0) for i in range(4)])
             for g in GENRES}
    centroids = {g: f.mean(0) for g, f in feats.items()}
    hits = sum(min(centroids, key=lambda h: (centroids[h] - f).norm()) == g
               for g, fs in feats.items() for f in fs)
    assert hits >= 0.9 * 4 * len(GENRES)


def test_write_dataset_layout_and_cli(tmp_path):
    paths = write_dataset(tmp_path / "a", SynthConfig(per_genre=2, seconds=1.0, seed=1))
    assert len(paths) == 10 and [p.name for p in paths[:2]] == ["drone.00000.wav", "drone.00001.wav"]
    info = soundfile.info(str(paths[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    done = subprocess.run([sys.executable, "-m", "coaudio", "data", "synth", "--out", str(tmp_path / "b"),
                           "--per-genre", "2", "--seconds", "1", "--seed", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 10 clips" in done.stdout
    made = find_audio([tmp_path / "b"])
    assert [p.relative_to(tmp_path / "b") for p in made] == [p.relative_to(tmp_path / "a") for p in sorted(paths)]
    assert all(p.read_bytes() == (tmp_path / "a" / p.relative_to(tmp_path / "b")).read_bytes() for p in made)
