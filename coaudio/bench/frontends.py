"""``coaudio bench stream``, per front end: what one hop costs, audio block to prediction.

For each front end, the shipped recipe that uses it (``gtzan``, ``gtzan-melstats``,
``gtzan-vggish``, ``gtzan-musicnn``) gives the model shape and hop; the classifier has random
weights (the cost does not depend on them). Each hop-sized block of audio goes through the very
:class:`~coaudio.online.session.Session` that ``coaudio stream`` runs: the front end's streaming
log-mel, its token function (learned embedder, band statistics, VGGish or musicnn) on the new
patch, one continual step. A pretrained front end uses the fetched weights when the model store
has them, else a randomly initialised network of the same shape (same cost), and says so.

Reported per front end: hop length, mean and p95 time per hop after the window has filled, the
real-time factor (time per hop / hop length) and the part of it spent computing the token
(for the learned front end the embedder runs inside the model's step and is not split out).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from coaudio.features.fixed import token_function
from coaudio.models.classifier import AudioClassifier
from coaudio.online.model import OnlineModel
from coaudio.online.session import Session, p95

RECIPES = {
    "learned": "gtzan",
    "melstats": "gtzan-melstats",
    "vggish": "gtzan-vggish",
    "musicnn": "gtzan-musicnn",
}


def run(kind: str, measured_hops: int = 50, threads: int = 1, sample_rate: int = 16_000) -> dict:
    """One record (JSON-ready) for front end ``kind`` with its recipe's model, on ``threads``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return _run(kind, measured_hops, threads, sample_rate)
    finally:
        torch.set_num_threads(previous)


def _run(kind: str, measured_hops: int, threads: int, sample_rate: int) -> dict:
    online, weights = _online(kind)
    frontend, spent = online.frontend, []
    if online.embed is not None:  # time the token function inside the session
        online.embed = _timed(online.embed, spent)
    block = int(round(frontend.hop_s * sample_rate))
    warmup = online.window + 2 + int(np.ceil(frontend.patch_s / frontend.hop_s))
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(block * (warmup + measured_hops))).astype(np.float32)
    session = Session(online, sample_rate)
    hop_us, token_us = [], []
    for i in range(warmup + measured_hops):
        spent.clear()
        started = time.perf_counter()
        hops = session.push(audio[i * block : (i + 1) * block])
        elapsed = (time.perf_counter() - started) * 1e6
        if i >= warmup and hops:
            hop_us.append(elapsed / len(hops))
            token_us.append(sum(spent) / len(hops))
    hop_us.sort()
    mean = statistics.fmean(hop_us)
    return {
        "frontend": kind,
        "recipe": RECIPES[kind],
        "weights": weights,
        "hop_s": frontend.hop_s,
        "patch_s": frontend.patch_s,
        "window": online.window,
        "threads": threads,
        "measured_hops": len(hop_us),
        "hop_us": mean,
        "hop_p95_us": p95(hop_us),
        "rtf": mean / 1e6 / frontend.hop_s,
        "token_us": statistics.fmean(token_us) if online.embed is not None else None,
    }


def _timed(embed, spent: list[float]):
    def timed(patches):
        started = time.perf_counter()
        out = embed(patches)
        spent.append((time.perf_counter() - started) * 1e6)
        return out

    return timed


def _online(kind: str) -> tuple[OnlineModel, str]:
    """The recipe's classifier (random weights) and its front end's token function, with the
    fetched weights or, when they are not fetched, a random network of the same shape."""
    from coaudio.bench.training import shipped_recipe
    from coaudio.pretrained.frontends import resolve_frontend
    from coaudio.train.loop import build_model

    recipe = shipped_recipe(RECIPES[kind])
    torch.manual_seed(0)
    model: AudioClassifier = build_model(recipe, 10).eval()
    frontend = recipe.frontend
    if kind in ("learned", "melstats"):
        embed, weights = token_function(frontend), "-"
    else:
        try:
            embed, weights = token_function(resolve_frontend(frontend)), "pretrained"
        except FileNotFoundError as exc:  # not fetched: the same network with random weights costs the same
            state = "damaged" if "damaged" in str(exc) else "not fetched"
            embed, weights = _random_network(frontend), f"random ({state})"
    return OnlineModel(model, [f"c{i}" for i in range(10)], frontend, embed), weights


def _random_network(frontend):
    if frontend.kind == "musicnn":
        from coaudio.features.musicnn import Musicnn

        network = Musicnn().eval()
        return lambda patches: network.tokens(patches, frontend.layer)
    from coaudio.features.embed import VGGish

    network = VGGish().eval()
    return lambda patches: network(patches)
