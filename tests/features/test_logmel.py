"""Log-mel: the VGGish recipe, checked against an independent float64 re-derivation, and
streaming equal to offline bit for bit for any chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coaudio.audio import resample
from coaudio.features import logmel
from coaudio.features.logmel import log_mel, mel_matrix, patches
from coaudio.features.stream import (
    StreamingLogMel,
    init_log_mel_state,
    init_patch_state,
    log_mel_step,
    patch_step,
)


def _reference_filterbank() -> np.ndarray:
    """Band by band, bin by bin, straight from the VGGish description."""
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    lo, hi = mel(125.0), mel(7500.0)
    edges = [lo + (hi - lo) * i / 65 for i in range(66)]
    out = np.zeros((257, 64))
    for band in range(64):
        left, center, right = edges[band], edges[band + 1], edges[band + 2]
        for b in range(1, 257):  # bin 0 (DC) stays zero
            m = mel(8000.0 * b / 256)
            out[b, band] = max(0.0, min((m - left) / (center - left), (right - m) / (right - center)))
    return out


def _reference_log_mel(x: np.ndarray) -> np.ndarray:
    n = np.arange(400)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 400)  # periodic Hann
    count = 1 + (len(x) - 400) // 160
    frames = np.stack([x[160 * k : 160 * k + 400] for k in range(count)]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(frames * window, 512))  # zero-padded at the end to 512
    return np.log(spectrum @ _reference_filterbank() + 0.01)


def _signal(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tones = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t)
    return (tones + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_filterbank_matches_independent_derivation_and_librosa_htk():
    ours = mel_matrix()
    assert ours.shape == (257, 64)
    np.testing.assert_allclose(ours, _reference_filterbank(), rtol=0, atol=1e-12)
    librosa = pytest.importorskip("librosa")
    theirs = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=125, fmax=7500, htk=True, norm=None).T
    assert np.abs(ours - theirs).max() < 0.01  # librosa's ramps are linear in Hz, ours in mel
    assert ((ours > 0) == (theirs > 0)).all()


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_log_mel_matches_float64_reference(dtype, tolerance):
    x = _signal(2.0)
    got = log_mel(x, dtype=dtype)
    expected = _reference_log_mel(x)
    assert got.dtype == dtype and got.shape == expected.shape == (1 + (32000 - 400) // 160, 64)
    assert np.abs(got.double().numpy() - expected).max() < tolerance


def test_frame_and_patch_counts_of_a_30_second_clip():
    frames = log_mel(np.zeros(30 * 16000, dtype=np.float32))
    assert frames.shape == (2998, 64)
    assert patches(frames).shape == (31, 96, 64)
    assert patches(frames, hop_frames=48).shape == (61, 96, 64)
    assert torch.equal(frames[0], torch.full((64,), math.log(0.01)))  # silence


def test_a_1khz_sine_lights_up_the_band_around_1khz():
    t = np.arange(3 * 16000) / 16000
    frames = log_mel((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    band = int(frames.mean(0).argmax())
    centers_hz = 700 * (
        np.exp(np.linspace(logmel.hertz_to_mel(125), logmel.hertz_to_mel(7500), 66)[1:-1] / 1127) - 1
    )
    assert abs(centers_hz[band] - 1000) < 60  # bands are ~110 Hz apart there
    assert frames.std(0).max() < 1e-3  # a steady tone gives the same frame every time


def test_short_inputs_give_empty_results():
    assert log_mel(np.zeros(399, dtype=np.float32)).shape == (0, 64)
    assert log_mel(np.zeros(400, dtype=np.float32)).shape == (1, 64)
    # 96 frames need 400 + 95 * 160 = 15600 samples
    assert patches(log_mel(np.zeros(15599, dtype=np.float32))).shape == (0, 96, 64)
    assert patches(log_mel(np.zeros(15600, dtype=np.float32))).shape == (1, 96, 64)
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 800), dtype=np.float32))


CHUNKS = [1, 159, 160, 161, 997, 16000, None]  # None = the whole signal at once
PATCH_LIMIT = 96 + 130  # kept frames never exceed one patch plus one hop


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("chunk", CHUNKS, ids=[str(c) for c in CHUNKS])
def test_streaming_frames_equal_offline_exactly(chunk, dtype):
    x = _signal(1.3 if chunk == 1 else 3.7)
    offline = log_mel(x, dtype=dtype)
    size = chunk or len(x)
    state, got = init_log_mel_state(), []
    for start in range(0, len(x), size):
        frames, state = log_mel_step(x[start : start + size], state, dtype)
        got.append(frames)
    assert torch.equal(torch.cat(got), offline)


@pytest.mark.parametrize("hop", [96, 48, 25, 1, 130])
@pytest.mark.parametrize("chunk", [1, 7, 96, 300])
def test_streaming_patches_equal_offline_exactly(hop, chunk):
    frames = log_mel(_signal(4.0))
    state, got = init_patch_state(), []
    for start in range(0, frames.shape[0], chunk):
        new, state = patch_step(frames[start : start + chunk], state, hop)
        got.append(new)
    assert torch.equal(torch.cat(got), patches(frames, hop))
    assert state.frames.shape[0] < PATCH_LIMIT


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 8000])
@pytest.mark.parametrize("chunk", [1, 511, 4096])
def test_streaming_with_resampling_equals_offline_after_flush(rate, chunk):
    x = _signal(2.5 if chunk > 1 else 1.1, sr=rate, seed=rate)
    offline_frames = log_mel(resample(x, rate))
    stream = StreamingLogMel(rate, hop_frames=48)
    frames, pieces = [], []
    for start in range(0, len(x), chunk):
        f, p = stream.push(x[start : start + chunk])
        frames.append(f)
        pieces.append(p)
    f, p = stream.flush()
    frames.append(f)
    pieces.append(p)
    assert torch.equal(torch.cat(frames), offline_frames)
    assert torch.equal(torch.cat(pieces), patches(offline_frames, 48))
