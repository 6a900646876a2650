"""``coaudio classify`` throughput: seconds of audio per wall second, continual vs regular.

Test audio: GTZAN-like clips (30 s, 22,050 Hz mono WAV) written to a temporary folder. Model:
the GTZAN encoder shape (d=192, 16 heads, d_ff=192, n=120, 0.25 s hops) with the default
learned patch embedder (width 8, 128-d tokens), random weights.

* ``continual``: :func:`coaudio.online.classify.classify_file`, what ``coaudio classify`` runs
  (decode -> streaming log-mel -> batched embedding of each block's patches -> one step per hop);
  on 1 core in this process, and on 2 cores as two worker processes sharing the files.
* ``regular``: the same decoding, log-mel and batched embedding, then the regular encoder on
  every hop's window (the last <= n tokens), i.e. windows recomputed, embeddings not.

Worker start-up (spawn, imports, model loading) is excluded: workers classify one file each
before the clock starts.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from coaudio.audio import read_audio
from coaudio.bench.pipeline import gtzan_model
from coaudio.features.logmel import log_mel
from coaudio.models.checkpoint import save_checkpoint
from coaudio.models.classifier import ModelConfig
from coaudio.online import classify
from coaudio.workers import worker_pool

CLIP_SECONDS, CLIP_RATE = 30.0, 22_050
DEFAULT_EMBEDDER_WIDTH = ModelConfig.__dataclass_fields__["embedder_width"].default  # 8


def _clips(folder: Path, count: int) -> list[Path]:
    import soundfile

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        t = np.arange(int(CLIP_SECONDS * CLIP_RATE)) / CLIP_RATE
        x = 0.3 * np.sin(2 * np.pi * (110 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)
        paths.append(folder / f"clip{i:02d}.wav")
        soundfile.write(paths[-1], x.astype(np.float32), CLIP_RATE, subtype="PCM_16")
    return paths


def _regular(online, path: Path) -> None:
    model, n = online.model, online.window
    tokens = model.tokens(online.frontend.patches(log_mel(read_audio(path))))
    for k in range(tokens.shape[0]):
        first = max(0, k - n + 1)
        model.head(model.head_norm(model.encoder(tokens[None, first : k + 1], start=first)))


def run(clips: int = 16, rounds: int = 2) -> dict:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    online = gtzan_model(embedder_width=DEFAULT_EMBEDDER_WIDTH)
    try:
        with tempfile.TemporaryDirectory(prefix="coaudio-bench-") as tmp:
            folder = Path(tmp)
            checkpoint = folder / "model.safetensors"
            save_checkpoint(
                checkpoint, online.model.eval(), online.labels, {"frontend": asdict(online.frontend)}
            )
            paths = _clips(folder, clips)
            inputs = [(p, p.name) for p in paths]
            audio = clips * CLIP_SECONDS
            with torch.inference_mode():
                classify.classify_file(online, *inputs[0])  # warm-up
                one = min(
                    _timed(lambda: [classify.classify_file(online, p, s) for p, s in inputs])
                    for _ in range(rounds)
                )
                regular = min(_timed(lambda: [_regular(online, p) for p in paths]) for _ in range(rounds))
            two = _two_workers(str(checkpoint), inputs, rounds)
    finally:
        torch.set_num_threads(previous)
    return {
        "clips": clips,
        "audio_s": audio,
        "continual_1core_xrt": audio / one,
        "continual_2core_xrt": audio / two,
        "regular_1core_xrt": audio / regular,
        "speedup_vs_regular_1core": regular / one,
    }


def _two_workers(checkpoint: str, inputs, rounds: int) -> float:
    with worker_pool(2, classify._worker_init, (checkpoint,)) as pool:
        list(pool.map(classify._worker_classify, *zip(*inputs[:2]), [3, 3], [False, False]))  # start both
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            list(pool.map(classify._worker_classify, *zip(*inputs), [3] * len(inputs), [False] * len(inputs)))
            best = min(best, time.perf_counter() - started)
    return best


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
