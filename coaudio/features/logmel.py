"""VGGish log-mel features, offline and streaming, bit-for-bit identical.

Frame k covers samples ``[k * HOP_SAMPLES, k * HOP_SAMPLES + WINDOW_SAMPLES)`` of 16 kHz audio
(no padding, no centering; a trailing partial frame is dropped). Each frame is multiplied by a
periodic Hann window, zero-padded to FFT_SIZE, and its magnitude spectrum is projected onto
N_MELS triangular bands (HTK mel scale, ramps linear in mel, no area normalisation, DC bin
zero), then ``log(mel + LOG_OFFSET)``. Patches are PATCH_FRAMES consecutive frames.

Why streaming equals offline exactly: every frame is computed by the same operations, each of
which gives the same bits for a row whatever else is in the batch (windowing and the log are
element-wise, the FFT is per row, and the mel projection is a fixed sequence of element-wise
multiply-adds, not a BLAS product, whose rounding depends on the batch size).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from coaudio.audio import (
    SAMPLE_RATE,  # 16 kHz: VGGish's rate, and what read_audio gives by default
)

WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms, i.e. 100 frames per second
FFT_SIZE = 512  # smallest power of two >= WINDOW_SAMPLES
N_BINS = FFT_SIZE // 2 + 1  # 257 magnitude bins, 0 .. 8 kHz
N_MELS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7_500.0
LOG_OFFSET = 0.01  # natural log of (mel + 0.01)
PATCH_FRAMES = 96  # 0.96 s
MEL_BREAK_HZ = 700.0  # HTK mel scale: 1127 * ln(1 + f / 700)
MEL_HIGH_Q = 1127.0


def hertz_to_mel(hz: np.ndarray) -> np.ndarray:
    return MEL_HIGH_Q * np.log1p(np.asarray(hz, dtype=np.float64) / MEL_BREAK_HZ)


@functools.cache
def mel_matrix() -> np.ndarray:
    """``(N_BINS, N_MELS)`` float64 VGGish filterbank: spectrum @ matrix -> mel bands."""
    bins_mel = hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, N_BINS))
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), N_MELS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]  # one triangle per band
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin never contributes
    return weights


def band_taps(filters: np.ndarray) -> tuple[Tensor, Tensor]:
    """A ``(bands, bins)`` filterbank as ``(bands, W)`` bin indices and weights (W = the widest
    band; shorter bands are padded with weight 0 on bin 0), for :func:`project_bands`. The
    weights keep ``filters``' dtype."""
    rows = [np.nonzero(row)[0] for row in filters]
    width = max(len(r) for r in rows)
    index = np.zeros((filters.shape[0], width), dtype=np.int64)
    value = np.zeros((filters.shape[0], width), dtype=filters.dtype)
    for band, bins in enumerate(rows):
        index[band, : len(bins)] = bins
        value[band, : len(bins)] = filters[band, bins]
    return torch.from_numpy(index), torch.from_numpy(value)


def project_bands(spectrum: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """``(F, bins)`` -> ``(F, bands)``: band b sums ``spectrum[:, index[b, w]] * weight[b, w]``
    over w, as W element-wise multiply-adds of ``(F, bands)`` columns (3x faster than gathering
    ``(F, bands, W)``). Every frame's result is independent of the other frames in the batch,
    which a BLAS product's rounding is not: streaming and offline frames stay bit-identical."""
    mel = torch.zeros(spectrum.shape[0], index.shape[0], dtype=spectrum.dtype)
    for w in range(index.shape[1]):
        mel = torch.addcmul(mel, spectrum.index_select(1, index[:, w]), weight[:, w])
    return mel


@functools.cache
def _sparse_bands(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """VGGish's filterbank as :func:`band_taps`, weights in ``dtype``."""
    index, value = band_taps(mel_matrix().T)
    return index, value.to(dtype)


@functools.cache
def _window(dtype: torch.dtype) -> Tensor:
    return torch.hann_window(WINDOW_SAMPLES, periodic=True, dtype=torch.float64).to(dtype)


def frame_count(n_samples: int) -> int:
    """Complete frames in ``n_samples`` samples."""
    return 0 if n_samples < WINDOW_SAMPLES else 1 + (n_samples - WINDOW_SAMPLES) // HOP_SAMPLES


def log_mel(samples: Tensor | np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
    """Log-mel frames of mono 16 kHz audio.

    Args:
        samples: ``(N,)`` samples in [-1, 1].
        dtype: float32 (default) or float64 computation.

    Returns:
        ``(F, N_MELS)`` with ``F = frame_count(N)`` (possibly 0).
    """
    x = torch.as_tensor(samples).to(dtype)
    if x.dim() != 1:
        raise ValueError(f"log_mel expects mono samples (N,), got shape {tuple(x.shape)}")
    frames = frame_count(x.shape[0])
    if frames == 0:
        return torch.empty(0, N_MELS, dtype=dtype)
    windows = x[: (frames - 1) * HOP_SAMPLES + WINDOW_SAMPLES].unfold(0, WINDOW_SAMPLES, HOP_SAMPLES)
    spectrum = torch.fft.rfft(windows * _window(dtype), n=FFT_SIZE).abs()  # (F, N_BINS)
    return torch.log(_project(spectrum) + LOG_OFFSET)


def _project(spectrum: Tensor) -> Tensor:
    """``(F, N_BINS)`` magnitudes -> ``(F, N_MELS)`` band energies (:func:`project_bands`)."""
    return project_bands(spectrum, *_sparse_bands(spectrum.dtype))


def patches(frames: Tensor, hop_frames: int = PATCH_FRAMES, patch_frames: int = PATCH_FRAMES) -> Tensor:
    """``(F, M)`` -> ``(P, patch_frames, M)`` patches every ``hop_frames`` frames (a trailing
    partial patch is dropped; 96 = VGGish's non-overlapping 0.96 s; any front end's frames)."""
    if hop_frames < 1:
        raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
    if frames.shape[0] < patch_frames:
        return frames.new_empty(0, patch_frames, frames.shape[1])
    return frames.unfold(0, patch_frames, hop_frames).transpose(1, 2).contiguous()
