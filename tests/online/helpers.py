"""Shared by the online tests: small random-weight checkpoints, test audio, the batch reference."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from coaudio.audio import read_audio
from coaudio.continual import EncoderConfig, LayerConfig
from coaudio.features.frontend import FrontendConfig
from coaudio.features.logmel import log_mel, patches
from coaudio.models.checkpoint import save_checkpoint
from coaudio.models.classifier import AudioClassifier, ModelConfig

LABELS = ["chimes", "drone", "fourfloor", "noiserock", "waltz"]


def make_checkpoint(
    path: Path, hop_frames: int = 20, window: int = 6, n_layers: int = 1, seed: int = 0
) -> Path:
    """A random-weight classifier saved like ``coaudio train`` saves one (front end included)."""
    torch.manual_seed(seed)
    layer = LayerConfig(d_model=32, n_heads=4, d_ff=64, dropout=0.0)
    model = AudioClassifier(
        ModelConfig(
            n_classes=len(LABELS),
            token_dim=32,
            embedder_width=4,
            encoder=EncoderConfig(layer=layer, n_layers=n_layers, window=window),
        )
    )
    save_checkpoint(
        path, model.eval(), LABELS, {"epoch": 1, "frontend": asdict(FrontendConfig(hop_frames=hop_frames))}
    )
    return path


def tone_mix(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """``(N, channels)`` float32 in [-0.9, 0.9]: chirps and noise bursts, so hops differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    base = 0.4 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.2 * rng.standard_normal(t.size) * (
        np.sin(3 * t) > 0
    )
    out = np.stack([base * (0.8 + 0.2 * c) for c in range(channels)], axis=1)
    return np.clip(out, -0.9, 0.9).astype(np.float32)


def batch_probs(checkpoint: Path, audio: Path) -> torch.Tensor:
    """``(hops, C)``: the regular model on the window ending at every hop of the whole file."""
    from coaudio.online.model import load_online

    return window_probs(load_online(checkpoint), read_audio(audio))


def window_probs(online, signal_16k: np.ndarray) -> torch.Tensor:
    """``(hops, C)``: the regular model on the window of the last <= n patches of every hop."""
    tokens = patches(log_mel(signal_16k), online.frontend.hop_frames)
    n, out = online.window, []
    with torch.inference_mode():
        for k in range(tokens.shape[0]):
            first = max(0, k - n + 1)
            out.append(torch.softmax(online.model(tokens[None, first : k + 1], start=first)[0], dim=-1))
    return torch.stack(out)


def coaudio(*args, stdin=None, input=None, timeout=120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coaudio", *map(str, args)],
        stdin=stdin,
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env,
    )


def hops_of(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def probs_of(hops: list[dict], labels=LABELS, key="top") -> torch.Tensor:
    """Rebuild ``(hops, C)`` probabilities from ``--top-k C`` output."""
    rows = []
    for hop in hops:
        p = {entry["label"]: entry["p"] for entry in hop[key]}
        rows.append([p[label] for label in labels])
    return torch.tensor(rows)
