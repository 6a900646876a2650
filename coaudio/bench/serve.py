"""``coaudio bench serve``: how many real-time streams one ``coaudio serve`` carries.

Three processes per trial, all on loopback::

    this process: checkpoint, clips, search ---- starts ----> coaudio serve CKPT --port 0 --no-db
          |                                                    --max-streams CAP --engine E
          +-- per trial: python -m coaudio.bench.serve_load    (core 0: event loop + hub worker)
              N WebSocket clients, real-time paced             <---- /ws ---->
              (core 1; see coaudio.bench.serve_load)

**Where they run** (:mod:`coaudio.bench.serve_procs`): with two or more usable cores the
server gets the first one, the load generator the others, both at the highest priority the
machine allows, so the answer is "streams per server core" even while other processes run.

**A trial** at N streams: N clients connect and declare 16 kHz mono s16le, then start at
staggered moments over ``ramp_s`` (at evenly spread phases of a chunk) and each sends
music-like audio (:mod:`coaudio.data.synth` clips, looped) in ``chunk_s`` chunks, each when a
microphone would have it. After a warm-up
that by default lets every window fill (the regular model's cost grows until it has n tokens),
``trial_s`` seconds with every stream live are measured. A stream is OK when all its hops
arrive, its p95 latency (client side: the chunk that completes a hop sent -> its result
received) is at most ``max_p95_ms``, and it stays real time: its lag (result received - the
moment its audio ended on the stream's schedule) does not grow by more than ``max_drift_ms``
from the first quarter of the window to the last. A trial is OK when every stream is.

**The search** per engine (continual, regular, regular-cached: ``coaudio.serve.regular``):
double N from ``start`` until a trial fails or ``cap`` passes, then bisect between the largest
OK and the smallest failed N until they are within ``precision`` (relative); bounded by a
total ``budget_s`` shared by the engines, and one server per engine for all its trials.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from coaudio.bench.serve_load import LoadPlan
from coaudio.bench.serve_procs import SAMPLE_RATE, ServerProcess, engine_probe, pinning, priority_of
from coaudio.online.session import p95

CLIP_S = 8.0  # each synthetic clip; streams loop them


@dataclass(frozen=True)
class TrialSettings:
    chunk_s: float = 0.25  # audio per WebSocket message
    ramp_s: float = 2.0  # streams start spread over this
    warmup_s: float | None = None  # None: until every window is full, plus 1 s
    trial_s: float = 15.0  # measured, every stream live
    max_p95_ms: float = 250.0  # a stream's p95 hop latency
    max_drift_ms: float = 100.0  # growth of a stream's lag over the window
    abort_lag_s: float = 3.0  # stop a trial once any stream's results are this late
    compression: bool = True  # clients offer permessage-deflate, as browsers do


def make_checkpoint(folder: Path, window: int = 120, blocks: int = 1) -> Path:
    """The GTZAN recipe's model (:func:`coaudio.bench.pipeline.gtzan_model`, random weights)
    saved as a checkpoint the server loads."""
    from coaudio.bench.pipeline import gtzan_model
    from coaudio.models.checkpoint import save_checkpoint

    online = gtzan_model(window=window, blocks=blocks)
    path = folder / f"gtzan-n{window}-b{blocks}.safetensors"
    save_checkpoint(path, online.model, online.labels, {"frontend": asdict(online.frontend)})
    return path


def write_clips(folder: Path, seconds: float = CLIP_S) -> list[Path]:
    """One 16 kHz s16le clip per synthetic genre."""
    import numpy as np

    from coaudio.data.synth import GENRES, synthesize

    paths = []
    for genre in GENRES:
        audio = synthesize(genre, 0, seconds=seconds)
        path = folder / f"{genre}.s16le"
        path.write_bytes((np.clip(audio, -1, 1 - 1 / 32768) * 32768).round().astype("<i2").tobytes())
        paths.append(path)
    return paths


def summarize(raw: dict, settings: TrialSettings) -> dict:
    """One trial's result from the load generator's raw hops (see the module docstring)."""
    n = raw.get("plan", {}).get("streams", 0)
    if "error" in raw:
        return {"streams": n, "ok": False, "reason": raw["error"]}
    failures: dict[str, int] = {}
    latencies, server_ms, hops = [], [], 0
    for s in raw["streams"]:
        reason = _stream_failure(s, settings)
        if reason:
            failures[reason] = failures.get(reason, 0) + 1
        latencies += [h[1] for h in s["hops"]]
        server_ms += [h[3] for h in s["hops"]]
        hops += len(s["hops"])
    latencies.sort()
    server_ms.sort()
    usage = raw.get("usage", {})
    ok = not raw["aborted"] and not failures
    reasons = [f"{count} of {n} streams: {why}" for why, count in failures.items()]
    if raw["aborted"]:  # the streams' own verdicts follow from it
        reasons = [f"stopped early: results more than {settings.abort_lag_s:g} s late"]
    return {
        "streams": n,
        "ok": ok,
        "reason": "; ".join(reasons),
        "p50_ms": latencies[len(latencies) // 2] if latencies else None,
        "p95_ms": p95(latencies) if latencies else None,
        "max_ms": latencies[-1] if latencies else None,
        "server_p50_ms": server_ms[len(server_ms) // 2] if server_ms else None,
        "server_p95_ms": p95(server_ms) if server_ms else None,
        "hops_per_s": None if raw["aborted"] else hops / settings.trial_s,
        "client_late_p95_ms": max((s["late_ms_p95"] for s in raw["streams"]), default=0.0),
        **{k: round(v, 3) for k, v in usage.items()},
    }


def _stream_failure(s: dict, settings: TrialSettings) -> str | None:
    """Why a stream is not OK, or None."""
    if s["error"]:
        return f"error ({s['error'][:80]})"
    if len(s["hops"]) < s["expected"]:
        return "hops missing"
    if s["dropped"]:
        return "results dropped by the server"
    latencies = sorted(h[1] for h in s["hops"])
    if latencies and p95(latencies) > settings.max_p95_ms:
        return f"p95 latency > {settings.max_p95_ms:g} ms"
    lags = [h[2] for h in sorted(s["hops"])]  # in stream order
    quarter = len(lags) // 4
    if quarter and _median(lags[-quarter:]) - _median(lags[:quarter]) > settings.max_drift_ms:
        return f"falling behind (lag grew > {settings.max_drift_ms:g} ms)"
    return None


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def search(
    measure: Callable[[int], dict],
    start: int = 8,
    cap: int = 1024,
    budget_s: float = 1200.0,
    precision: float = 0.1,
) -> dict:
    """The largest N with ``measure(N)["ok"]``: doubling from ``start``, then bisection until
    the failing and passing N are within ``precision``; no trial starts that the remaining
    ``budget_s`` cannot hold (each is assumed as long as the longest so far)."""
    deadline = time.monotonic() + budget_s
    trials, good, bad, longest = [], 0, None, 0.0
    n, stopped = min(start, cap), "converged"
    while True:
        if time.monotonic() + longest > deadline:
            stopped = "budget spent"
            break
        began = time.monotonic()
        trial = dict(measure(n), duration_s=0.0)
        trial["duration_s"] = round(time.monotonic() - began, 1)
        longest = max(longest, trial["duration_s"])
        trials.append(trial)
        if trial["ok"]:
            good = max(good, n)
        else:
            bad = n if bad is None else min(bad, n)
        if bad is None:
            if n >= cap:
                stopped = f"the cap ({cap}) carried"
                break
            n = min(2 * n, cap)
            continue
        if bad - good <= max(1, precision * good):
            break
        n = (good + bad) // 2
    best = next((t for t in trials if t["streams"] == good and t["ok"]), None)
    return {"max_streams": good, "first_failing": bad, "stopped": stopped, "at_max": best, "trials": trials}


def run(
    engines: tuple[str, ...] = ("continual", "regular"),
    window: int = 120,
    blocks: int = 1,
    settings: TrialSettings = TrialSettings(),
    start: int = 8,
    cap: int = 1024,
    budget_s: float = 2400.0,
    precision: float = 0.1,
    pin: bool = True,
    checkpoint: Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Search every engine; a JSON-ready document (see the module docstring)."""
    from coaudio.online.model import load_online

    pinned = pinning(pin)
    deadline = time.monotonic() + budget_s
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="coaudio-bench-serve-") as tmp:
        folder = Path(tmp)
        given = checkpoint
        checkpoint = checkpoint or make_checkpoint(folder, window, blocks)
        online = load_online(checkpoint)
        frontend = online.frontend
        warmup_s = settings.warmup_s
        if warmup_s is None:  # every window full: the regular model's cost stops growing
            warmup_s = frontend.hop_end_s(online.window - 1) + 1.0
        clips = [str(p) for p in write_clips(folder)]
        results = {}
        probes = {}
        priorities: dict = {"asked": pinned.nice}  # what the processes got (nice), for the notes
        for i, engine in enumerate(engines):
            probes[f"before {engine}"] = engine_probe(online, pinned.server, pinned.nice)
            share = (deadline - time.monotonic()) / (len(engines) - i)
            servers = [ServerProcess(checkpoint, engine, cap, pinned.server, pinned.nice)]
            counter = iter(range(1_000_000))

            def measure(n: int, engine=engine, servers=servers, counter=counter) -> dict:
                progress(f"{engine}: {n} streams")
                server = servers[-1]
                plan = LoadPlan(
                    server.ws, n, clips, frontend.hop_end_s(0), frontend.hop_s, settings.chunk_s,
                    SAMPLE_RATE, settings.ramp_s, warmup_s, settings.trial_s,
                    settings.abort_lag_s, server.proc.pid, pinned.clients, f"t{next(counter)}",
                    settings.compression, pinned.nice,
                )  # fmt: skip
                raw = _load(plan)
                trial = summarize(raw, settings)
                priorities.update(server=priority_of(server.proc.pid), clients=raw.get("nice"))
                if not server.wait_idle():  # still busy with this trial: the next gets a fresh one
                    server.stop()
                    servers.append(ServerProcess(checkpoint, engine, cap, pinned.server, pinned.nice))
                progress(f"{engine}: {n} streams {'OK' if trial['ok'] else 'not OK: ' + trial['reason']}")
                return trial

            try:
                results[engine] = search(measure, start, cap, share, precision)
            finally:
                servers[-1].stop()
    document = {
        "model": {
            "window": online.window,
            "blocks": online.model.cfg.encoder.n_layers,
            "checkpoint": str(given) if given else "the GTZAN recipe's model, random weights",
        },
        "settings": dict(asdict(settings), warmup_s=warmup_s),
        "pinning": asdict(pinned),
        "priority": priorities,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "probe_ms_per_hop": dict(probes, end=engine_probe(online, pinned.server, pinned.nice)),
        "engines": results,
    }
    if "continual" in results:
        for other in ("regular", "regular-cached"):
            if other in results and results[other]["max_streams"]:
                document[f"ratio_vs_{other}"] = (
                    results["continual"]["max_streams"] / results[other]["max_streams"]
                )
    return document


def _load(plan: LoadPlan) -> dict:
    """One trial in the load generator's own process."""
    timeout = plan.total_s + plan.ramp_s + 240
    done = subprocess.run(
        [sys.executable, "-m", "coaudio.bench.serve_load"],
        input=json.dumps(asdict(plan)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        return {"plan": asdict(plan), "error": f"the load generator failed: {done.stderr[-1500:]}"}
    return json.loads(done.stdout)
