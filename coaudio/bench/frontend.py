"""Log-mel front ends: coaudio vs librosa on the same recipe, and many streams per hop.

Offline throughput is seconds of audio per second of wall time ("x real time"), over 30 s
clips (GTZAN-sized), after one warm-up pass, best of ``rounds``: VGGish's log-mel
(:func:`~coaudio.features.logmel.log_mel`) against ``librosa.feature.melspectrogram`` with the
same magnitude/HTK/no-centering recipe, and musicnn's
(:func:`~coaudio.features.musicnn_mel.musicnn_mel`) against librosa's defaults plus musicnn's
compression, as musicnn computes it. Both sides run on one core: one torch thread for coaudio,
one BLAS thread for librosa's filterbank product (threadpoolctl; otherwise OpenBLAS takes every
core). The 2-core figure runs two worker processes with one torch thread each at the same
time, as ``coaudio features --jobs 2`` does, and takes the slower worker's extraction time
(start-up and making the test audio are not timed).

Per hop: ``N`` streams of 16 kHz audio each push one hop (0.96 s, VGGish's patch) to their
own streaming log-mel, one extractor at a time (``push``) or all at once
(:func:`~coaudio.features.stream.push_many`, what the per-hop engine does); the time of one
such hop for all ``N`` streams, best of ``rounds`` means over ``hops`` hops.
"""

from __future__ import annotations

import contextlib
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
    PATCH_FRAMES,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    log_mel,
)
from coaudio.workers import worker_pool

CLIP_SECONDS = 30.0
HOP_SAMPLES_PER_STREAM = PATCH_FRAMES * HOP_SAMPLES  # one VGGish hop: 0.96 s at 16 kHz


def _clips(n_clips: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    size = int(CLIP_SECONDS * SAMPLE_RATE)
    return [(rng.standard_normal(size) * 0.1).astype(np.float32) for _ in range(n_clips)]


def _timed(extract, clips: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for clip in clips:
        extract(clip)
    return time.perf_counter() - start


def _ours(clips: list[np.ndarray]) -> float:
    return _timed(log_mel, clips)


def _librosa_vggish(clip: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(  # the same recipe: magnitude, HTK mel, no centering
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
    return np.log(mel + LOG_OFFSET)


def _librosa_musicnn(clip: np.ndarray) -> np.ndarray:
    import librosa

    from coaudio.features.musicnn_mel import HOP, N_FFT, N_MELS

    # musicnn's extractor: librosa's defaults (power 2, Slaney, centred), float16, log10
    mel = librosa.feature.melspectrogram(y=clip, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)


def _one_blas_thread():
    """A context in which numpy's BLAS uses one thread (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # librosa's scikit-learn brings it; without it librosa may use every core
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _worker(n_clips: int, seed: int) -> float:
    clips = _clips(n_clips, seed)  # made before timing
    return _ours(clips)


def _side_by_side(ours, theirs, clips: list[np.ndarray], rounds: int) -> tuple[float, float]:
    """Best-of-``rounds`` seconds of ``ours`` and ``theirs`` over ``clips``, one core each,
    the two alternating so that a busy moment of the machine hits both."""
    with _one_blas_thread():
        _timed(ours, clips[:1]), _timed(theirs, clips[:1])  # warm-up (librosa compiles with numba)
        best = [float("inf"), float("inf")]
        for _ in range(rounds):
            best = [min(best[0], _timed(ours, clips)), min(best[1], _timed(theirs, clips))]
    return best[0], best[1]


def run(n_clips: int = 20, rounds: int = 3, streams: tuple[int, ...] = (1, 10, 100), hops: int = 5) -> dict:
    """One record: offline throughputs (x real time) and ratios, and per-hop costs for each
    number of ``streams``."""
    from coaudio.features.musicnn_mel import musicnn_mel

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clips = _clips(n_clips)
        ours, theirs = _side_by_side(log_mel, _librosa_vggish, clips, rounds)
        ours_m, theirs_m = _side_by_side(musicnn_mel, _librosa_musicnn, clips, rounds)
        per_hop = [_per_hop(n, hops, rounds) for n in streams]
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
        "musicnn": {
            "coaudio_1core_xrt": audio / ours_m,
            "librosa_1core_xrt": audio / theirs_m,
            "speedup_vs_librosa": theirs_m / ours_m,
        },
        "per_hop": per_hop,
    }


def _per_hop(n_streams: int, hops: int, rounds: int) -> dict:
    """Milliseconds of front end per hop of ``n_streams`` 16 kHz streams, pushed one by one and
    batched (:func:`~coaudio.features.stream.push_many`), on fresh extractors of each kind."""
    from coaudio.features.stream import StreamingLogMel, push_many

    rng = np.random.default_rng(n_streams)
    # every hop pushes the same blocks: the cost does not depend on the samples
    blocks = list((0.1 * rng.standard_normal((n_streams, HOP_SAMPLES_PER_STREAM))).astype(np.float32))
    alone = [StreamingLogMel(SAMPLE_RATE) for _ in range(n_streams)]
    batched = [StreamingLogMel(SAMPLE_RATE) for _ in range(n_streams)]

    def one_by_one() -> None:
        for extractor, block in zip(alone, blocks):
            extractor.push(block)

    def together() -> None:
        push_many(batched, blocks)

    best = {one_by_one: float("inf"), together: float("inf")}
    for r in range(rounds + 1):  # round 0 warms up (first patches, allocator)
        for push in best:  # alternating, so that a busy moment of the machine hits both
            started = time.perf_counter()
            for _ in range(hops):
                push()
            if r:
                best[push] = min(best[push], (time.perf_counter() - started) / hops)
    alone_ms, batched_ms = best[one_by_one] * 1e3, best[together] * 1e3
    return {
        "streams": n_streams,
        "hop_s": HOP_SAMPLES_PER_STREAM / SAMPLE_RATE,
        "one_by_one_ms": alone_ms,
        "batched_ms": batched_ms,
        "batched_us_per_stream": batched_ms * 1e3 / n_streams,
        "speedup": alone_ms / batched_ms,
    }
