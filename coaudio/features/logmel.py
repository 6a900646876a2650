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
# frames cut and passed from FFT to log at a time: the arrays of a block (about 4 MB) stay in
# cache and are reused by the allocator (10-25% faster than all frames at once, on 30 s clips
# and on 100 streams' hops alike)
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
    """A sparse filterbank for :func:`project_bands`, as taps: tap index w of band b is the
    band's w-th bin. Tap index w exists for bands ``firsts[w] ..`` (to the last band), with
    ``bins`` listing their bins, tap index after tap index. Bins count from ``low``: the
    spectrum given to :func:`project_bands` is the bin range ``[low, high)``, the only bins
    any band uses."""

    low: int
    high: int
    bands: int
    bins: Tensor  # (T,) int64, relative to low: tap index 0's bands' bins, then tap index 1's ...
    firsts: tuple[int, ...]  # per tap index w: the first band with a w-th bin
    weights: tuple[Tensor, ...]  # per tap index w: (bands - firsts[w],) the filter weights


def band_taps(filters: np.ndarray) -> BandTaps:
    """A ``(bands, bins)`` filterbank whose bands each cover a contiguous run of bins, as
    :class:`BandTaps` (weights in ``filters``' dtype). A band narrower than w + 1 bins but
    after ``firsts[w]`` gets tap w on bin ``low`` with weight 0, which adds exactly 0
    (magnitudes are finite)."""
    rows = [np.nonzero(row)[0] for row in filters]
    if any(len(r) and r[-1] - r[0] + 1 != len(r) for r in rows):
        raise ValueError("band_taps needs bands of contiguous bins")
    low = min(r[0] for r in rows if len(r))
    high = max(r[-1] for r in rows if len(r)) + 1
    bins, firsts, weights = [], [], []
    for w in range(max(len(r) for r in rows)):
        first = next(b for b, r in enumerate(rows) if len(r) > w)
        wide = [len(rows[b]) > w for b in range(first, len(rows))]
        bins += [rows[b][w] - low if ok else 0 for b, ok in enumerate(wide, first)]
        values = [filters[b, rows[b][w]] if ok else 0.0 for b, ok in enumerate(wide, first)]
        firsts.append(first)
        weights.append(torch.from_numpy(np.asarray(values, dtype=filters.dtype)))
    bins = torch.tensor(bins, dtype=torch.int64)
    return BandTaps(low, high, len(rows), bins, tuple(firsts), tuple(weights))


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
    sizes = [taps.bands - first for first in taps.firsts]
    columns = torch.split_with_sizes(gathered, sizes, dim=1)  # per tap index (F, bands - first)
    mel = columns[0] * taps.weights[0]  # tap index 0: every band has one
    for first, column, weight in zip(taps.firsts[1:], columns[1:], taps.weights[1:]):
        mel[:, first:].addcmul_(column, weight)
    return mel


@functools.cache
def _taps(dtype: torch.dtype) -> BandTaps:
    """VGGish's filterbank as :class:`BandTaps`, weights in ``dtype``."""
    taps = band_taps(mel_matrix().T)
    return taps._replace(weights=tuple(w.to(dtype) for w in taps.weights))


@functools.cache
def _window(dtype: torch.dtype) -> Tensor:
    return torch.hann_window(WINDOW_SAMPLES, periodic=True, dtype=torch.float64).to(dtype)


def frame_count(n_samples: int) -> int:
    """Complete frames in ``n_samples`` samples."""
    return 0 if n_samples < WINDOW_SAMPLES else 1 + (n_samples - WINDOW_SAMPLES) // HOP_SAMPLES


def frame_counts(pieces: list[Tensor], length: int, hop: int) -> list[int]:
    """Complete frames of ``length`` samples every ``hop`` samples in each piece."""
    sizes = [p.shape[0] for p in pieces]  # not len(): Tensor.__len__ is Python, 1 us a call
    return [0 if n < length else 1 + (n - length) // hop for n in sizes]


def map_frames(
    pieces: list[Tensor], counts: list[int], length: int, hop: int, n_fft: int, per_block: Callable
) -> Tensor:
    """``per_block`` over the frames of all pieces, cut block by block (BLOCK_FRAMES frames).

    Frame k of a piece is its samples ``[k * hop, k * hop + length)``, zero-padded to ``n_fft``.
    A block is cut just before ``per_block`` (the FFT to the log) uses it, so it is still in
    cache, and no buffer for all frames is ever made. Each row's result is the same whatever
    block it is in when ``per_block`` computes every row on its own, as the front ends do.

    Args:
        pieces: ``(N_i,)`` signals of one dtype, with ``counts = frame_counts(pieces, ...)``.
        per_block: ``(B, n_fft)`` frames (its own buffer: it may change them) -> ``(B, ...)``.

    Returns:
        ``(sum F_i, ...)``: the results, piece after piece.
    """
    results = [per_block(_cut(pieces, runs, length, hop, n_fft)) for runs in _blocks(counts)]
    return results[0] if len(results) == 1 else torch.cat(results)


def _blocks(counts: list[int]) -> list[list[tuple[int, int, int]]]:
    """The frames of all pieces as runs ``(piece, first frame, frames)``, grouped into blocks
    of BLOCK_FRAMES frames (the last one shorter)."""
    blocks, runs, room = [], [], BLOCK_FRAMES
    for piece, count in enumerate(counts):
        first = 0
        while first < count:
            take = min(room, count - first)
            runs.append((piece, first, take))
            first, room = first + take, room - take
            if room == 0:
                blocks.append(runs)
                runs, room = [], BLOCK_FRAMES
    return blocks + [runs] if runs else blocks


def _cut(pieces: list[Tensor], runs: list[tuple[int, int, int]], length: int, hop: int, n_fft: int) -> Tensor:
    """``(frames of the runs, n_fft)``: each run's frames, zero-padded past ``length``."""
    out = torch.empty(sum(run[2] for run in runs), n_fft, dtype=pieces[0].dtype)
    out[:, length:].zero_()
    row = 0
    for piece, first, count in runs:
        samples = pieces[piece][first * hop : (first + count - 1) * hop + length]
        out[row : row + count, :length] = samples.unfold(0, length, hop)  # (count, length) view
        row += count
    return out


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
    counts = frame_counts(pieces, WINDOW_SAMPLES, HOP_SAMPLES)
    if not any(counts):
        return [torch.empty(0, N_MELS, dtype=dtype) for _ in pieces]
    mel = map_frames(pieces, counts, WINDOW_SAMPLES, HOP_SAMPLES, FFT_SIZE, _log_mel_rows)  # (F, N_MELS)
    return list(torch.split_with_sizes(mel, counts))


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
