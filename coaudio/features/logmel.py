"""VGGish log-mel features, offline and streaming, bit-for-bit identical.

Frame k covers samples ``[k * HOP_SAMPLES, k * HOP_SAMPLES + WINDOW_SAMPLES)`` of 16 kHz audio
(no padding, no centering; a trailing partial frame is dropped). Each frame is multiplied by a
periodic Hann window, zero-padded to FFT_SIZE, and its magnitude spectrum is projected onto
N_MELS triangular bands (HTK mel scale, ramps linear in mel, no area normalisation, DC bin
zero), then ``log(mel + LOG_OFFSET)``. Patches are PATCH_FRAMES consecutive frames.

Why streaming equals offline exactly: every frame is computed by the same operations, each of
which gives the same bits for a row whatever else is in the batch (windowing and the log are
element-wise, the FFT is per row, and the mel projection is a fixed sequence of element-wise
multiply-adds, not a BLAS product, whose rounding depends on the batch size). The same holds
for the frames of many signals or streams computed as one batch (:func:`log_mel_many`,
:func:`coaudio.features.stream.push_many`), and for long signals, which pass from FFT to log
in blocks of BLOCK_FRAMES frames.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

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
# frames per pass from FFT to log: that pass's arrays (about 4 MB) are reused by the allocator
# and mostly cached instead of fresh pages per call (10-15% faster on 30 s clips than one pass)
BLOCK_FRAMES = 1024
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


class BandTaps(NamedTuple):
    """A sparse filterbank for :func:`project_bands`. Tap ``t`` of the tap list ``tap`` adds
    ``spectrum[:, bins[t]] * weights[t]`` to bands ``first .. bands-1`` (one contiguous run per
    tap index, see :func:`band_taps`). Bins count from ``low``: the spectrum given to
    :func:`project_bands` is the bin range ``[low, high)``, the only bins any band uses."""

    low: int
    high: int
    bins: Tensor  # (T,) int64, relative to low
    weights: Tensor  # (T,) the filter weights, in the filterbank's dtype
    runs: tuple[tuple[int, int, int], ...]  # per tap index w: (first band, start, stop) in bins


def band_taps(filters: np.ndarray) -> BandTaps:
    """A ``(bands, bins)`` filterbank whose bands each cover a contiguous run of bins, as
    :class:`BandTaps`: tap index w of band b is its w-th nonzero bin. Tap index w is kept for
    bands ``first_w ..`` (the first band with more than w bins onwards); a narrower band in that
    run gets weight 0 on the run's lowest bin, which adds exactly 0 (magnitudes are finite)."""
    rows = [np.nonzero(row)[0] for row in filters]
    if any(len(r) and r[-1] - r[0] + 1 != len(r) for r in rows):
        raise ValueError("band_taps needs bands of contiguous bins")
    low = min(r[0] for r in rows if len(r))
    high = max(r[-1] for r in rows if len(r)) + 1
    bins, weights, runs, start = [], [], [], 0
    for w in range(max(len(r) for r in rows)):
        first = next(b for b, r in enumerate(rows) if len(r) > w)
        for b in range(first, len(rows)):
            wide = len(rows[b]) > w
            bins.append(rows[b][w] - low if wide else 0)
            weights.append(filters[b, rows[b][w]] if wide else 0.0)
        runs.append((first, start, start + len(rows) - first))
        start += len(rows) - first
    weights = torch.from_numpy(np.asarray(weights, dtype=filters.dtype))
    return BandTaps(low, high, torch.tensor(bins, dtype=torch.int64), weights, tuple(runs))


def project_bands(spectrum: Tensor, taps: BandTaps) -> Tensor:
    """``(F, high - low)`` magnitudes (bins ``taps.low ..``) -> ``(F, bands)``: band b is
    ``fma(s_w, weight_w, ... fma(s_1, weight_1, s_0 * weight_0))`` over its bins in order.

    One gather of every tap's bin ``(F, T)``, then one ``addcmul`` per tap index over the
    bands that have it: the same fused multiply-adds in the same order as one per tap over all
    bands with zero-weight padding (the previous form: the bits are unchanged, tested), but with
    about half the work and without a gather per tap. Every frame's result is independent of
    the other frames in the batch, which a BLAS product's rounding is not: streaming, batched
    and offline frames stay bit-identical."""
    gathered = spectrum.index_select(1, taps.bins)  # (F, T)
    (_, start, stop), *rest = taps.runs
    mel = gathered[:, start:stop] * taps.weights[start:stop]  # tap 0: every band has one
    for first, start, stop in rest:
        mel[:, first:].addcmul_(gathered[:, start:stop], taps.weights[start:stop])
    return mel


@functools.cache
def _taps(dtype: torch.dtype) -> BandTaps:
    """VGGish's filterbank as :class:`BandTaps`, weights in ``dtype``."""
    taps = band_taps(mel_matrix().T)
    return taps._replace(weights=taps.weights.to(dtype))


@functools.cache
def _window(dtype: torch.dtype) -> Tensor:
    return torch.hann_window(WINDOW_SAMPLES, periodic=True, dtype=torch.float64).to(dtype)


def frame_count(n_samples: int) -> int:
    """Complete frames in ``n_samples`` samples."""
    return 0 if n_samples < WINDOW_SAMPLES else 1 + (n_samples - WINDOW_SAMPLES) // HOP_SAMPLES


def frame_rows(pieces: list[Tensor], length: int, hop: int, n_fft: int) -> tuple[Tensor, list[int]]:
    """Every complete frame of every piece, zero-padded to ``n_fft``, in one buffer (the
    window is applied block by block later, while the block is in cache).

    Args:
        pieces: ``(N_i,)`` signals of one dtype; frame k of a piece is its samples
            ``[k * hop, k * hop + length)``.

    Returns:
        ``(sum F_i, n_fft)`` frames, piece after piece, and the counts ``F_i``.
    """
    counts = [0 if len(p) < length else 1 + (len(p) - length) // hop for p in pieces]
    dtype = pieces[0].dtype if pieces else torch.float32
    out = torch.empty(sum(counts), n_fft, dtype=dtype)  # the FFT's input: no pad, no copy later
    out[:, length:].zero_()
    row = 0
    for piece, count in zip(pieces, counts):
        if count:
            out[row : row + count, :length] = piece[: (count - 1) * hop + length].unfold(0, length, hop)
            row += count
    return out, counts


def by_blocks(frames: Tensor, per_block: Callable[[Tensor], Tensor]) -> Tensor:
    """``per_block`` over blocks of BLOCK_FRAMES rows of ``frames`` ``(F, ...)``, results
    stacked: ``(F, ...)``. The same bits as one call on all rows when ``per_block`` computes
    each row on its own, as the front ends' FFT-to-log passes do."""
    if frames.shape[0] <= BLOCK_FRAMES:
        return per_block(frames)
    blocks = [per_block(frames[i : i + BLOCK_FRAMES]) for i in range(0, frames.shape[0], BLOCK_FRAMES)]
    return torch.cat(blocks)


def magnitudes(spectrum: Tensor, low: int, high: int) -> Tensor:
    """``(F, bins)`` complex -> ``(F, high - low)`` ``|spectrum|`` of bins ``[low, high)``.

    complex64: ``hypot(re, im)`` of the bins in range only, in two thirds of ``.abs()``'s
    time and with its bits (equal on 2e7 random values; tests/features checks it). complex128
    (the float64 option): ``.abs()`` of whole rows as before, since float64 ``hypot`` differs
    from it in the last bit for about 1 value in 7000."""
    if spectrum.dtype == torch.complex64:
        parts = torch.view_as_real(spectrum[:, low:high])  # (F, B, 2)
        return torch.hypot(parts[..., 0], parts[..., 1])
    return spectrum.abs()[:, low:high]


def log_mel(samples: Tensor | np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
    """Log-mel frames of mono 16 kHz audio.

    Args:
        samples: ``(N,)`` samples in [-1, 1].
        dtype: float32 (default) or float64 computation.

    Returns:
        ``(F, N_MELS)`` with ``F = frame_count(N)`` (possibly 0).
    """
    x = torch.as_tensor(samples)
    if x.dim() != 1:
        raise ValueError(f"log_mel expects mono samples (N,), got shape {tuple(x.shape)}")
    return log_mel_many([x], dtype)[0]


def log_mel_many(pieces: list[Tensor], dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """:func:`log_mel` of several signals with one FFT, one projection and one log over all
    their frames; every frame has the bits :func:`log_mel` of its own signal gives it.

    Args:
        pieces: ``(N_i,)`` mono 16 kHz signals.

    Returns:
        ``(F_i, N_MELS)`` per piece (views of one tensor).
    """
    pieces = [torch.as_tensor(p).to(dtype) for p in pieces]
    frames, counts = frame_rows(pieces, WINDOW_SAMPLES, HOP_SAMPLES, FFT_SIZE)  # (F, 512)
    if frames.shape[0] == 0:
        return [torch.empty(0, N_MELS, dtype=dtype) for _ in pieces]
    return list(by_blocks(frames, _log_mel_rows).split(counts))


def _log_mel_rows(frames: Tensor) -> Tensor:
    """``(F, FFT_SIZE)`` zero-padded frames -> ``(F, N_MELS)`` log-mel frames (the frames
    are windowed in place)."""
    frames[:, :WINDOW_SAMPLES].mul_(_window(frames.dtype))
    taps = _taps(frames.dtype)
    spectrum = magnitudes(torch.fft.rfft(frames), taps.low, taps.high)  # (F, high - low)
    mel = project_bands(spectrum, taps)  # (F, N_MELS)
    return mel.add_(LOG_OFFSET).log_()


def patches(frames: Tensor, hop_frames: int = PATCH_FRAMES, patch_frames: int = PATCH_FRAMES) -> Tensor:
    """``(F, M)`` -> ``(P, patch_frames, M)`` patches every ``hop_frames`` frames (a trailing
    partial patch is dropped; 96 = VGGish's non-overlapping 0.96 s; any front end's frames)."""
    if hop_frames < 1:
        raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
    if frames.shape[0] < patch_frames:
        return frames.new_empty(0, patch_frames, frames.shape[1])
    return frames.unfold(0, patch_frames, hop_frames).transpose(1, 2).contiguous()
