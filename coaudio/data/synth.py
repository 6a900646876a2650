"""A built-in synthetic "genre" dataset: seconds to make, deterministic by seed.

Each genre is a recipe with its own tempo range, metre, rhythm, timbre and harmony; every clip
draws its key, tempo, melody, mix and noise at random, so clips of one genre differ while the
genres stay apart. Layout: ``<out>/<genre>/<genre>.000NN.wav`` (16 kHz, 16-bit, mono), the
same shape as GTZAN's genre folders.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SAMPLE_RATE = 16_000
GENRES = ("drone", "fourfloor", "waltz", "noiserock", "chimes")


@dataclass(frozen=True)
class SynthConfig:
    per_genre: int = 40  # clips per genre
    seconds: float = 10.0  # clip length
    seed: int = 0


def _rng(seed: int, genre: str, index: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{genre}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _time(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _note_hz(key: float, semitones) -> np.ndarray:
    return key * 2.0 ** (np.asarray(semitones, dtype=np.float64) / 12.0)


def _hits(t: np.ndarray, times: np.ndarray, decay: float) -> np.ndarray:
    """Exponentially decaying envelopes starting at each time in ``times``."""
    env = np.zeros_like(t)
    for start in times:
        since = t - start
        mask = since >= 0
        env[mask] += np.exp(-since[mask] / decay)
    return env


def _drone(t, rng):
    key = rng.uniform(55, 90)
    chord = _note_hz(key, [0, 7, 12, rng.choice([15, 16])])
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.15) * t + rng.uniform(0, 6.3))
    return swell * sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) / (i + 1) for i, f in enumerate(chord))


def _fourfloor(t, rng):
    beat = 60.0 / rng.uniform(118, 132)
    beats = np.arange(0, t[-1], beat)
    kick = _hits(t, beats, 0.08) * np.sin(2 * np.pi * 55 * t)
    hat = _hits(t, beats + beat / 2, 0.02) * rng.standard_normal(len(t)) * 0.5
    bass = np.sign(np.sin(2 * np.pi * _note_hz(rng.uniform(40, 60), 0) * t)) * 0.2
    return kick + hat + bass


def _waltz(t, rng):
    beat = 60.0 / rng.uniform(84, 100)
    bars = np.arange(0, t[-1], 3 * beat)
    oom = _hits(t, bars, 0.15) * np.sin(2 * np.pi * rng.uniform(80, 110) * t)
    pah = _hits(t, np.concatenate([bars + beat, bars + 2 * beat]), 0.1) * np.sin(2 * np.pi * rng.uniform(300, 400) * t) * 0.4
    key = rng.uniform(220, 330)
    steps = rng.choice([0, 2, 4, 5, 7, 9, 11, 12], size=len(bars) * 3)
    melody_hz = np.repeat(_note_hz(key, steps), int(beat * SAMPLE_RATE) + 1)[: len(t)]
    melody = 2 * np.abs(2 * ((np.cumsum(melody_hz) / SAMPLE_RATE) % 1) - 1) - 1  # triangle
    return oom + pah + 0.3 * melody


def _noiserock(t, rng):
    beat = 60.0 / rng.uniform(150, 180)
    key = rng.uniform(82, 123)
    roots = rng.choice([0, 3, 5, 7, 10], size=int(t[-1] / (2 * beat)) + 2)
    root_hz = np.repeat(_note_hz(key, roots), int(2 * beat * SAMPLE_RATE) + 1)[: len(t)]
    phase = np.cumsum(root_hz) / SAMPLE_RATE
    guitar = np.tanh(4 * (np.sin(2 * np.pi * phase) + np.sin(2 * np.pi * 1.5 * phase)))
    snare = _hits(t, np.arange(beat, t[-1], 2 * beat), 0.05) * rng.standard_normal(len(t))
    return 0.5 * guitar + 0.6 * snare


def _chimes(t, rng):
    key = rng.uniform(660, 990)
    starts = np.sort(rng.uniform(0, t[-1], size=int(rng.uniform(1.0, 2.0) * t[-1])))
    out = np.zeros_like(t)
    for start in starts:
        f = _note_hz(key, rng.choice([0, 2, 4, 7, 9, 12, 14]))
        since = t - start
        mask = since >= 0
        out[mask] += np.exp(-since[mask] / 0.6) * (np.sin(2 * np.pi * f * since[mask])
                                                    + 0.3 * np.sin(2 * np.pi * 2.76 * f * since[mask]))
    return out


RECIPES: dict[str, Callable] = dict(zip(GENRES, (_drone, _fourfloor, _waltz, _noiserock, _chimes)))


def synthesize(genre: str, index: int, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """One clip as ``(N,)`` float32 in [-1, 1] at 16 kHz."""
    rng = _rng(seed, genre, index)
    t = _time(seconds)
    clip = RECIPES[genre](t, rng) + rng.uniform(0.005, 0.03) * rng.standard_normal(len(t))
    return (clip / (np.abs(clip).max() + 1e-9) * rng.uniform(0.5, 0.9)).astype(np.float32)


def write_dataset(out: str | Path, config: SynthConfig = SynthConfig(),
                  on_clip: Callable[[Path], None] | None = None) -> list[Path]:
    """Write every clip (overwriting: the same config always gives the same files)."""
    import soundfile

    out = Path(out)
    written = []
    for genre in GENRES:
        (out / genre).mkdir(parents=True, exist_ok=True)
        for i in range(config.per_genre):
            path = out / genre / f"{genre}.{i:05d}.wav"
            clip = synthesize(genre, i, config.seconds, config.seed)
            soundfile.write(path, clip, SAMPLE_RATE, subtype="PCM_16")
            written.append(path)
            if on_clip is not None:
                on_clip(path)
    return written
