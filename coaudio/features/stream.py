"""Streaming log-mel: push any chunks of audio, get frames and patches as soon as complete.

The pure steps carry their leftovers explicitly::

    frames, state = log_mel_step(chunk_16k, state)        # samples -> frames
    new, pstate = patch_step(frames, pstate, hop_frames)  # frames  -> patches

Concatenating what they return over any chunking equals :func:`log_mel` / :func:`patches`
on the whole signal, bit for bit. :class:`StreamingLogMel` adds resampling from any input
rate (soxr, which streams exactly what its one-shot resampler returns) on top.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from coaudio.audio import RESAMPLE_QUALITY
from coaudio.features.logmel import (
    HOP_SAMPLES,
    N_MELS,
    PATCH_FRAMES,
    SAMPLE_RATE,
    frame_count,
    log_mel,
)


class LogMelState(NamedTuple):
    """samples: ``(R,)`` float32 16 kHz samples not yet consumed (R < window + hop)."""

    samples: np.ndarray


class PatchState(NamedTuple):
    """frames: ``(K, N_MELS)`` frames kept for future patches; first: stream index of
    ``frames[0]``; next_patch: stream index of the first frame of the next patch."""

    frames: Tensor
    first: int
    next_patch: int


def init_log_mel_state() -> LogMelState:
    return LogMelState(samples=np.zeros(0, dtype=np.float32))


def init_patch_state(dtype: torch.dtype = torch.float32, n_mels: int = N_MELS) -> PatchState:
    return PatchState(frames=torch.empty(0, n_mels, dtype=dtype), first=0, next_patch=0)


def log_mel_step(
    chunk: np.ndarray, state: LogMelState, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, LogMelState]:
    """Frames completed by ``chunk`` (16 kHz mono), and the new state."""
    buffer = np.concatenate([state.samples, np.asarray(chunk, dtype=np.float32).reshape(-1)])
    frames = frame_count(len(buffer))
    out = log_mel(torch.from_numpy(buffer), dtype=dtype)
    return out, LogMelState(samples=buffer[frames * HOP_SAMPLES :].copy())


def patch_step(
    frames: Tensor, state: PatchState, hop_frames: int = PATCH_FRAMES, patch_frames: int = PATCH_FRAMES
) -> tuple[Tensor, PatchState]:
    """Patches ``(P, patch_frames, M)`` completed by new ``frames`` ``(F, M)``, and the new
    state (any front end's frames: VGGish's 96 x 64 patches by default)."""
    if hop_frames < 1:
        raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
    buffer = torch.cat([state.frames, frames.to(state.frames.dtype)])
    first, start = state.first, state.next_patch
    done = []
    while start + patch_frames <= first + buffer.shape[0]:
        offset = start - first
        done.append(buffer[offset : offset + patch_frames])
        start += hop_frames
    keep_from = min(max(start - first, 0), buffer.shape[0])  # frames before `start` are spent
    new_state = PatchState(frames=buffer[keep_from:].clone(), first=first + keep_from, next_patch=start)
    if not done:
        return buffer.new_empty(0, patch_frames, buffer.shape[1]), new_state
    return torch.stack(done), new_state


class StreamingLogMel:
    """Audio at any rate in, 16 kHz log-mel frames and patches out, as soon as complete.

    A front end with other frames subclasses it and overrides ``PATCH_FRAMES``, ``N_MELS``,
    :meth:`_init_mel` and :meth:`_mel_step` (musicnn:
    :class:`coaudio.features.musicnn_mel.StreamingMusicnnMel`).

    The resampler is soxr's streaming resampler, a stateful C object, which is why this is a
    small object rather than a pure function. It holds back its filter delay: the last few
    milliseconds of input come out only at :meth:`flush`, so a live stream that never ends
    yields the frames of those samples one chunk later. With ``sample_rate == 16000`` nothing
    is held back.
    """

    PATCH_FRAMES, N_MELS = PATCH_FRAMES, N_MELS

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        hop_frames: int = PATCH_FRAMES,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        import soxr

        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        if hop_frames < 1:
            raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
        self.sample_rate, self.hop_frames, self.dtype = sample_rate, hop_frames, dtype
        self._resampler = None
        if sample_rate != SAMPLE_RATE:
            self._resampler = soxr.ResampleStream(
                sample_rate, SAMPLE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
        self._mel = self._init_mel()
        self._patch = init_patch_state(dtype, self.N_MELS)

    def push(self, chunk: np.ndarray) -> tuple[Tensor, Tensor]:
        """``chunk``: ``(N,)`` mono samples at ``sample_rate``. Returns the frames
        ``(F, N_MELS)`` and patches ``(P, PATCH_FRAMES, N_MELS)`` it completed."""
        return self._consume(np.asarray(chunk, dtype=np.float32).reshape(-1), last=False)

    def flush(self) -> tuple[Tensor, Tensor]:
        """End of stream: release what the resampler held back."""
        return self._consume(np.zeros(0, dtype=np.float32), last=True)

    def _consume(self, chunk: np.ndarray, last: bool) -> tuple[Tensor, Tensor]:
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk, last=last)
        frames, self._mel = self._mel_step(chunk, self._mel, self.dtype)
        new_patches, self._patch = patch_step(frames, self._patch, self.hop_frames, self.PATCH_FRAMES)
        return frames, new_patches

    def _init_mel(self):
        return init_log_mel_state()

    def _mel_step(self, chunk: np.ndarray, state, dtype: torch.dtype):
        return log_mel_step(chunk, state, dtype)
