"""Streaming log-mel: push any chunks of audio, get frames and patches as soon as complete.

The pure steps carry their leftovers explicitly::

    frames, state = log_mel_step(chunk_16k, state)        # samples -> frames
    new, pstate = patch_step(frames, pstate, hop_frames)  # frames  -> patches

Concatenating what they return over any chunking equals :func:`log_mel` / :func:`patches`
on the whole signal, bit for bit. :class:`StreamingLogMel` adds resampling from any input
rate (soxr, which streams exactly what its one-shot resampler returns) on top.

Many streams at once (a server's hundreds)::

    results = push_many(extractors, chunks)   # [(frames, patches)] per extractor

resamples each stream on its own, then computes the new frames of all extractors of one kind
with one FFT, one mel projection and one log (:func:`~coaudio.features.logmel.log_mel_many`):
each extractor gets exactly the frames and patches its own ``push`` would give, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    log_mel_many,
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
    """Frames ``(F, N_MELS)`` completed by ``chunk`` (``(N,)`` 16 kHz mono), and the new state."""
    return log_mel_steps([chunk], [state], dtype)[0]


def log_mel_steps(
    chunks: Sequence[np.ndarray], states: Sequence[LogMelState], dtype: torch.dtype = torch.float32
) -> list[tuple[Tensor, LogMelState]]:
    """:func:`log_mel_step` of several streams (chunk i continues state i), computed as one
    batch; each result has the bits of that stream's own step."""
    buffers = [
        np.concatenate([state.samples, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        for chunk, state in zip(chunks, states, strict=True)
    ]
    frames = log_mel_many([torch.from_numpy(b) for b in buffers], dtype)
    return [(f, LogMelState(samples=b[f.shape[0] * HOP_SAMPLES :].copy())) for f, b in zip(frames, buffers)]


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
    :meth:`_init_mel` and ``_mel_steps`` (musicnn:
    :class:`coaudio.features.musicnn_mel.StreamingMusicnnMel`).

    The resampler is soxr's streaming resampler, a stateful C object, which is why this is a
    small object rather than a pure function. It holds back its filter delay: the last few
    milliseconds of input come out only at :meth:`flush`, so a live stream that never ends
    yields the frames of those samples one chunk later. With ``sample_rate == 16000`` nothing
    is held back.
    """

    PATCH_FRAMES, N_MELS = PATCH_FRAMES, N_MELS
    # (chunks, states, dtype) -> [(frames, state)]: several streams' steps as one batch
    _mel_steps = staticmethod(log_mel_steps)

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
        return push_many([self], [chunk])[0]

    def flush(self) -> tuple[Tensor, Tensor]:
        """End of stream: release what the resampler held back."""
        return _consume([self], [self._resample(np.zeros(0, dtype=np.float32), last=True)])[0]

    def _resample(self, chunk: np.ndarray, last: bool) -> np.ndarray:
        """``(N,)`` at ``sample_rate`` -> ``(M,)`` at 16 kHz (per stream: soxr keeps state)."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if self._resampler is None:
            return chunk
        return self._resampler.resample_chunk(chunk, last=last)

    def _init_mel(self):
        return init_log_mel_state()


def push_many(
    extractors: Sequence[StreamingLogMel], chunks: Sequence[np.ndarray]
) -> list[tuple[Tensor, Tensor]]:
    """``extractors[i].push(chunks[i])`` for every i, with one FFT, mel projection and log
    over all the new frames of the extractors of one kind (class and dtype); resampling and
    patches stay per stream.

    Args:
        extractors: distinct :class:`StreamingLogMel` objects (any mix of kinds and rates).
        chunks: ``(N_i,)`` mono samples at ``extractors[i].sample_rate``.

    Returns:
        Per extractor, the frames ``(F_i, N_MELS)`` and patches ``(P_i, PATCH_FRAMES,
        N_MELS)`` its own ``push`` would return, bit for bit (the frames may be views of one
        batch tensor).
    """
    if len(extractors) != len(chunks):
        raise ValueError(f"{len(extractors)} extractors but {len(chunks)} chunks")
    if len({id(e) for e in extractors}) != len(extractors):
        raise ValueError("an extractor appears twice: its chunks would race for one state")
    resampled = [e._resample(chunk, last=False) for e, chunk in zip(extractors, chunks)]
    return _consume(extractors, resampled)


def _consume(extractors: Sequence[StreamingLogMel], chunks: list[np.ndarray]) -> list[tuple[Tensor, Tensor]]:
    """16 kHz ``chunks`` through each extractor's log-mel (batched by kind) and patcher."""
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(extractors):  # one batch per frame recipe and dtype
        groups.setdefault((e._mel_steps, e.dtype), []).append(i)
    frames: list[Tensor] = [torch.empty(0)] * len(extractors)
    for (steps, dtype), members in groups.items():
        done = steps([chunks[i] for i in members], [extractors[i]._mel for i in members], dtype)
        for i, (new, state) in zip(members, done):
            frames[i], extractors[i]._mel = new, state
    out = []
    for e, new in zip(extractors, frames):
        new_patches, e._patch = patch_step(new, e._patch, e.hop_frames, e.PATCH_FRAMES)
        out.append((new, new_patches))
    return out
