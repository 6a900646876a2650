"""musicnn's own log-mel front end, offline and streaming, bit-for-bit identical.

musicnn (``extractor.batch_data``) computes ``librosa.feature.melspectrogram(sr=16000,
n_fft=512, hop_length=256, n_mels=96)`` with librosa's defaults: periodic Hann window, power 2,
Slaney mel filters with area normalisation, and ``center=True``, which since librosa 0.9 pads
256 zeros on both sides. So frame k covers samples ``[k * HOP - 256, k * HOP + 256)``. The
mel power is then cast to float16 and compressed with ``log10(10000 * x + 1)``.

Here, as in librosa, the windowed frames are transformed in float64 and the spectrum is
rounded to complex64; power and mel projection are float32. The compression rounds to float16
(as musicnn did) but computes the log in float32: under numpy >= 2, ``10000 * x`` stays
float16 and overflows to inf for mel power above 6.55, which musicnn never saw in training
(numpy < 2 promoted it to float32).

Why streaming equals offline exactly: every frame goes through the same operations, each of
which gives the same bits for a row whatever else is in the batch (window and log are
element-wise, the FFT is per row, the mel projection is a fixed sequence of element-wise
multiply-adds rather than a BLAS product, whose rounding can depend on the batch size).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from coaudio.features.logmel import (
    BandTaps,
    band_taps,
    frame_counts,
    magnitudes,
    map_frames,
    patches,
    project_bands,
)
from coaudio.features.stream import PatchState, StreamingLogMel, init_patch_state, patch_step

SAMPLE_RATE = 16_000
N_FFT = 512  # 32 ms window
HOP = 256  # 16 ms, 62.5 frames per second
N_MELS = 96
N_BINS = N_FFT // 2 + 1
PATCH_FRAMES = 187  # musicnn's 3 s input: librosa.time_to_frames(3) + 1, i.e. 2.992 s
LEFT_PAD = N_FFT // 2  # librosa's center=True: frame 0 is centred on sample 0
FLOAT16_MAX = 65504.0  # larger mel power would round to inf in float16; it is clamped here


@functools.cache
def mel_filters() -> np.ndarray:
    """``(N_MELS, N_BINS)`` float32: ``librosa.filters.mel(sr=16000, n_fft=512, n_mels=96)``."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)


@functools.cache
def _window() -> Tensor:
    """``(N_FFT,)`` float64 periodic Hann, exactly the window librosa's stft uses."""
    import librosa

    return torch.from_numpy(librosa.filters.get_window("hann", N_FFT, fftbins=True).astype(np.float64))


@functools.cache
def _taps() -> BandTaps:
    """librosa's filterbank as :class:`coaudio.features.logmel.BandTaps` (float32 weights;
    the widest band is 15 bins)."""
    return band_taps(mel_filters())


def frame_count(n_samples: int) -> int:
    """Frames whose samples all lie in ``[-LEFT_PAD, n_samples)`` (the zero pad, the signal)."""
    return max(0, (n_samples - (N_FFT - LEFT_PAD)) // HOP + 1)


def _frames_many(padded: list[Tensor]) -> list[Tensor]:
    """``(N_i,)`` float32 signals that each start at a frame boundary -> ``(F_i, N_MELS)``
    float32 compressed mel frames, one per complete window, with one FFT, projection and
    compression over all of them (each frame's bits are those of its signal alone)."""
    counts = frame_counts(padded, N_FFT, HOP)
    if not any(counts):
        return [torch.empty(0, N_MELS, dtype=torch.float32) for _ in padded]
    return list(torch.split_with_sizes(map_frames(padded, counts, N_FFT, HOP, N_FFT, _mel_rows), counts))


def _mel_rows(frames: Tensor) -> Tensor:
    """``(F, N_FFT)`` float32 frames -> ``(F, N_MELS)`` float32 compressed mels."""
    taps = _taps()
    windowed = frames.double().mul_(_window())  # float64 as librosa's stft (the cast is exact)
    spectrum = torch.fft.rfft(windowed)[:, taps.low : taps.high]  # the bins the bands use
    spectrum = spectrum.to(torch.complex64)  # librosa stores complex64
    power = magnitudes(spectrum, 0, taps.high - taps.low).pow_(2)  # (F, bins) float32, |z| ** 2
    return compress(project_bands(power, taps))


def compress(mel: Tensor) -> Tensor:
    """musicnn's compression of float32 mel power: round to float16, ``log10(10000 x + 1)``
    in float32 (never inf: see the module docstring). Any shape."""
    rounded = mel.clamp(max=FLOAT16_MAX).to(torch.float16).to(torch.float32)
    return rounded.mul_(10000).add_(1).log10_()  # in place: `rounded` is ours, a fresh tensor


def musicnn_mel(audio_16k: np.ndarray | Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """musicnn log-mel frames of mono 16 kHz audio.

    Frame k covers samples ``[k * HOP - 256, k * HOP + 256)`` and exists iff
    ``k * HOP + 256 <= N``: the left edge is zero-padded as librosa does, but the frames that
    would need librosa's right padding are not emitted, because a stream can only emit a frame
    once all its samples have arrived and cannot know where the signal ends. So the result is
    librosa's frames minus the last one or two, and equals the streamed frames exactly.

    Args:
        audio_16k: ``(N,)`` samples in [-1, 1].
        dtype: of the result (the computation is always musicnn's float32/float16 one).

    Returns:
        ``(F, N_MELS)`` with ``F = frame_count(N)`` (possibly 0).
    """
    x = torch.as_tensor(audio_16k).to(torch.float32)
    if x.dim() != 1:
        raise ValueError(f"musicnn_mel expects mono samples (N,), got shape {tuple(x.shape)}")
    return _frames_many([torch.cat([torch.zeros(LEFT_PAD), x])])[0].to(dtype)


def musicnn_patches(frames: Tensor, hop_frames: int = PATCH_FRAMES) -> Tensor:
    """``(F, N_MELS)`` -> ``(P, PATCH_FRAMES, N_MELS)`` patches starting every ``hop_frames``
    frames (a trailing partial patch is dropped)."""
    return patches(frames, hop_frames, PATCH_FRAMES)


# ----------------------------------------------------------------------------------------
# Streaming
# ----------------------------------------------------------------------------------------


class MusicnnMelState(NamedTuple):
    """samples: ``(R,)`` float32 16 kHz samples not yet consumed, starting at the next
    frame's first sample (R < N_FFT + HOP after a step; LEFT_PAD zeros at the start)."""

    samples: np.ndarray


MusicnnPatchState = PatchState  # frames (K, 96) kept for future patches; see coaudio.features.stream


def init_musicnn_mel_state() -> MusicnnMelState:
    return MusicnnMelState(samples=np.zeros(LEFT_PAD, dtype=np.float32))


def init_musicnn_patch_state(dtype: torch.dtype = torch.float32) -> PatchState:
    return init_patch_state(dtype, N_MELS)


def musicnn_mel_step(
    chunk_16k: np.ndarray | Tensor, state: MusicnnMelState, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, MusicnnMelState]:
    """Frames ``(F, N_MELS)`` completed by ``chunk_16k`` (``(N,)`` mono 16 kHz), and the new
    state (the input state is not modified)."""
    return musicnn_mel_steps([chunk_16k], [state], dtype)[0]


def musicnn_mel_steps(
    chunks: Sequence[np.ndarray | Tensor],
    states: Sequence[MusicnnMelState],
    dtype: torch.dtype = torch.float32,
) -> list[tuple[Tensor, MusicnnMelState]]:
    """:func:`musicnn_mel_step` of several streams (chunk i continues state i), computed as
    one batch; each result has the bits of that stream's own step."""
    buffers = [
        np.concatenate([state.samples, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        for chunk, state in zip(chunks, states, strict=True)
    ]
    frames = _frames_many([torch.from_numpy(b) for b in buffers])
    return [
        (f.to(dtype), MusicnnMelState(samples=b[f.shape[0] * HOP :].copy())) for f, b in zip(frames, buffers)
    ]


def musicnn_patch_step(
    frames: Tensor, state: PatchState, hop_frames: int = PATCH_FRAMES
) -> tuple[Tensor, PatchState]:
    """Patches ``(P, PATCH_FRAMES, N_MELS)`` completed by new ``frames`` ``(F, N_MELS)``,
    and the new state; concatenated over any chunking they equal :func:`musicnn_patches`."""
    return patch_step(frames, state, hop_frames, PATCH_FRAMES)


class StreamingMusicnnMel(StreamingLogMel):
    """Audio at any rate in, musicnn log-mel frames and patches out, as soon as complete.

    :class:`coaudio.features.stream.StreamingLogMel` with musicnn's frames: the same soxr
    streaming resampler brings other rates to 16 kHz and holds back its filter delay until
    :meth:`flush`; frames that would need samples past the end are never emitted, as in
    :func:`musicnn_mel`.
    """

    PATCH_FRAMES, N_MELS = PATCH_FRAMES, N_MELS
    _mel_steps = staticmethod(musicnn_mel_steps)

    def _init_mel(self) -> MusicnnMelState:
        # librosa's import and the filterbank (about 1 s) happen here, when the stream opens,
        # not inside its first push, which would then fall that far behind live audio
        _taps()
        _window()
        return init_musicnn_mel_state()
