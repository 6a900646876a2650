"""Log-mel throughput: coaudio's front end vs librosa on the same audio, 1 and 2 cores.

Throughput is seconds of audio per second of wall time ("x real time"), over 30 s clips
(GTZAN-sized), after one warm-up pass. The 2-core figure runs two worker processes with one
torch thread each at the same time, as ``coaudio features --jobs 2`` does, and takes the
slower worker's extraction time (start-up and making the test audio are not timed).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from coaudio.features.logmel import (
    FFT_SIZE,
    HOP_SAMPLES,
    LOG_OFFSET,
    MEL_MAX_HZ,
    MEL_MIN_HZ,
    N_MELS,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    log_mel,
)
from coaudio.workers import worker_pool

CLIP_SECONDS = 30.0


def _clips(n_clips: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    size = int(CLIP_SECONDS * SAMPLE_RATE)
    return [(rng.standard_normal(size) * 0.1).astype(np.float32) for _ in range(n_clips)]


def _ours(clips: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for clip in clips:
        log_mel(clip)
    return time.perf_counter() - start


def _librosa(clips: list[np.ndarray]) -> float:
    import librosa

    start = time.perf_counter()
    for clip in clips:  # the same recipe: magnitude, HTK mel, no centering
        mel = librosa.feature.melspectrogram(
            y=clip,
            sr=SAMPLE_RATE,
            n_fft=FFT_SIZE,
            hop_length=HOP_SAMPLES,
            win_length=WINDOW_SAMPLES,
            center=False,
            power=1.0,
            n_mels=N_MELS,
            fmin=MEL_MIN_HZ,
            fmax=MEL_MAX_HZ,
            htk=True,
            norm=None,
        )
        np.log(mel + LOG_OFFSET)
    return time.perf_counter() - start


def _worker(n_clips: int, seed: int) -> float:
    clips = _clips(n_clips, seed)  # made before timing
    return _ours(clips)


def run(n_clips: int = 20, rounds: int = 3) -> dict:
    """One record: throughputs (x real time) and their ratio."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clips = _clips(n_clips)
        _ours(clips[:1]), _librosa(clips[:1])  # warm-up (librosa compiles with numba once)
        ours = min(_ours(clips) for _ in range(rounds))
        theirs = min(_librosa(clips) for _ in range(rounds))
    finally:
        torch.set_num_threads(previous)
    with worker_pool(2) as pool:
        list(pool.map(_worker, [1, 1], [1, 2]))  # start both workers before timing
        # both workers run at once; the slower one's extraction time is the wall time
        best = min(max(pool.map(_worker, [n_clips, n_clips], [3, 4])) for _ in range(rounds))
    audio = n_clips * CLIP_SECONDS
    return {
        "clips": n_clips,
        "audio_s": audio,
        "coaudio_1core_xrt": audio / ours,
        "coaudio_2core_xrt": 2 * audio / best,
        "librosa_1core_xrt": audio / theirs,
        "speedup_vs_librosa": theirs / ours,
        "gtzan_8_3h_2core_s": 8.3 * 3600 / (2 * audio / best),
    }
