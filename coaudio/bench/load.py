"""Per-hop latency on a busy machine: quiet, then beside a multi-threaded torch job.

The defect this guards against: per-hop work on several threads stalls on OpenMP hand-offs
whenever another multi-threaded torch process (a training run, a second evaluate, classify
workers) holds the cores; a 1 ms hop became 20-100x slower. Each path below runs exactly as
its command runs it, with the command's thread policy (:mod:`coaudio.threads`):

* ``stream``: :class:`~coaudio.online.session.Session`, one push per 0.25 s block, on one
  thread (``coaudio stream``'s default);
* ``evaluate --streaming``: :func:`coaudio.online.evaluation.streaming_report`, which sets its
  own thread count;
* ``classify``: :func:`coaudio.online.classify.classify_file` on one thread, as each worker;
* ``stream, torch default threads``: the stream path on as many threads as usable cores,
  i.e. what per-hop work did before it was pinned; shown for contrast, not a target.

The load is a second process training the GTZAN-shaped classifier on as many threads as there
are usable cores (torch's default), as ``coaudio train`` would beside the stream. Model: the
GTZAN recipe's shape with random weights; audio: a 30 s synthetic clip at 22,050 Hz.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from coaudio.bench.pipeline import gtzan_model
from coaudio.threads import per_hop, set_threads, torch_threads, usable_cores

CLIP_SECONDS, CLIP_RATE = 30.0, 22_050
PATHS = ("stream", "evaluate --streaming", "classify", "stream, torch default threads")


def _clip(folder: Path) -> Path:
    import soundfile
    import soxr

    from coaudio.data.synth import synthesize

    audio = synthesize("fourfloor", 0, seconds=CLIP_SECONDS)  # 16 kHz
    path = folder / "clip.wav"
    soundfile.write(path, soxr.resample(audio, 16_000, CLIP_RATE), CLIP_RATE, subtype="PCM_16")
    return path


def _stream_ms(online, path: Path) -> list[float]:
    from coaudio.audio import stream_audio
    from coaudio.online.session import Session

    info, blocks = stream_audio(path, block_seconds=online.frontend.hop_s)
    session = Session(online, info.sample_rate)
    for block in blocks:
        session.push(block)
    session.flush()
    return session.stats.latencies_ms


def _evaluate_ms(online, path: Path) -> list[float]:
    from coaudio.online.evaluation import streaming_report

    report = streaming_report(online.model, [str(path)], [0], online.frontend, compare_clips=0)
    return [report.continual_us / 1e3]  # the report keeps the median per hop


def _classify_ms(online, path: Path) -> list[float]:
    from coaudio.online.classify import classify_file

    started = time.perf_counter()
    result = classify_file(online, path, str(path), 1, False)
    return [(time.perf_counter() - started) * 1e3 / max(result.hops, 1)]  # per hop, decoding included


def _measure(online, path: Path) -> dict[str, list[float]]:
    out = {}
    with per_hop():
        out["stream"] = _stream_ms(online, path)
    out["evaluate --streaming"] = _evaluate_ms(online, path)
    with per_hop():
        out["classify"] = _classify_ms(online, path)
    with torch_threads(usable_cores()):
        out["stream, torch default threads"] = _stream_ms(online, path)
    return out


LOAD_JOB = """
import sys, time, torch
from coaudio.bench.pipeline import gtzan_model
torch.set_num_threads(int(sys.argv[1]))
model = gtzan_model(window=16).model.train()
optimizer = torch.optim.AdamW(model.parameters())
x, y = torch.randn(16, 16, 96, 64), torch.randint(0, 10, (16,))
end = time.monotonic() + float(sys.argv[2])
first = True
while time.monotonic() < end:
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    if first:
        print("ready", flush=True); first = False
"""


def _start_load(threads: int, seconds: float) -> subprocess.Popen:
    job = subprocess.Popen(
        [sys.executable, "-c", LOAD_JOB, str(threads), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    if job.stdout.readline().strip() != "ready":
        job.kill()
        raise RuntimeError("the load job did not start")
    return job


def _summary(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "median_ms": statistics.median(values),
        "p95_ms": values[min(len(values) - 1, int(0.95 * len(values)))],
    }


def run(rounds: int = 2, load_threads: int | None = None) -> dict:
    """Per path: quiet and loaded per-hop latency (median and p95 over all rounds) and the
    loaded / quiet ratio of the medians."""
    load_threads = load_threads or usable_cores()
    online = gtzan_model()
    quiet: dict[str, list[float]] = {p: [] for p in PATHS}
    loaded: dict[str, list[float]] = {p: [] for p in PATHS}
    previous = set_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
            path = _clip(Path(tmp))
            _measure(online, path)  # warm-up: kernels compiled, caches filled
            for _ in range(rounds):
                for name, values in _measure(online, path).items():
                    quiet[name] += values
                job = _start_load(load_threads, seconds=600)
                try:
                    for name, values in _measure(online, path).items():
                        loaded[name] += values
                finally:
                    job.kill()
                    job.wait()
    finally:
        set_threads(previous)
    rows = []
    for name in PATHS:
        q, b = _summary(quiet[name]), _summary(loaded[name])
        rows.append({"path": name, "quiet": q, "loaded": b, "ratio": b["median_ms"] / q["median_ms"]})
    return {
        "load_threads": load_threads,
        "usable_cores": usable_cores(),
        "rounds": rounds,
        "clip_s": CLIP_SECONDS,
        "rows": rows,
    }


def rows_within(result: dict, limit: float = 3.0) -> bool:
    """Whether every pinned path (not the contrast row) stays within ``limit`` x quiet."""
    return all(r["ratio"] <= limit for r in result["rows"] if r["path"] != PATHS[-1])
