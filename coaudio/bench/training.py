"""``coaudio bench train``: training throughput on a GTZAN-sized set, before and after.

The set has GTZAN's fault-filtered shape: 443 training and 197 validation clips of 30 s, i.e.
117 tokens at 0.25 s hops, in 10 classes. Its log-mel patches are random numbers: the time an
epoch takes does not depend on what the patches hold (decoding and log-mel extraction happen
once, into the feature cache, and are timed by ``coaudio bench frontend``).

Rows, each with a shipped recipe as ``--recipe NAME`` loads it (model, windows per clip,
batch size, augmentation):

* ``gtzan, per-window batches (before)``: what training did before shared batches: windows
  in random order, every window's patches copied into a padded batch and embedded, padding
  included; timed over a few batches;
* ``gtzan, shared batches``: one real epoch of :func:`coaudio.train.loop.train_epoch`
  (training plus validation): a clip's windows share a batch, and each patch is embedded once;
* ``gtzan-melstats, frozen tokens``: the one-time token computation, then one real epoch that
  only runs the transformer.

A full run is projected as the recipe's ``train.epochs`` x the epoch time (early stopping
ends runs sooner).
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F

from coaudio.features.fixed import patch_stats
from coaudio.threads import batch_threads, set_threads
from coaudio.train.data import Clip, batch, training_windows

log = logging.getLogger(__name__)

GTZAN_SHAPE = {"train": 443, "valid": 197, "tokens": 117, "classes": 10}
QUICK_SHAPE = {"train": 24, "valid": 10, "tokens": 40, "classes": 10}


def shipped_recipe(name: str):
    """A shipped recipe (``gtzan``, ``gtzan-melstats``), as ``--recipe NAME`` loads it."""
    import tomllib

    from coaudio import recipes
    from coaudio.config import from_dict
    from coaudio.train.config import Recipe

    return from_dict(Recipe, tomllib.loads(recipes.text(name)))


def random_clips(shape: dict, seed: int = 0) -> dict[str, list[Clip]]:
    """Train and valid clips of ``shape["tokens"]`` random ``(96, 64)`` patches each."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split in ("train", "valid"):
        block = torch.empty(shape[split], shape["tokens"], 96, 64).normal_(-3.0, 2.0, generator=g)
        out[split] = [Clip(block[i], i % shape["classes"], f"{split}{i}") for i in range(shape[split])]
    return out


def _model(recipe, classes: int):
    from coaudio.train.loop import build_model

    torch.manual_seed(0)
    model = build_model(recipe, classes)
    return model, torch.optim.AdamW(model.parameters(), lr=recipe.train.lr)


def per_window_rate(recipe, clips: list[Clip], classes: int, batches: int) -> float:
    """Windows/s of the former training step: random order, padded per-window batches."""
    model, optimizer = _model(recipe, classes)
    model.train()
    g = torch.Generator().manual_seed(0)
    windows = training_windows(
        clips, recipe.model.encoder.window, recipe.data.min_window, recipe.data.windows_per_clip, g
    )
    windows = [windows[i] for i in torch.randperm(len(windows), generator=g).tolist()]
    size = recipe.train.batch_size
    elapsed, seen = 0.0, 0
    for n in range(batches + 1):  # the first batch warms up and is not counted
        started = time.perf_counter()
        x, mask, start, labels = batch(clips, windows[n * size : (n + 1) * size])
        loss = F.cross_entropy(model(x, start=start, key_mask=mask), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if n:
            elapsed += time.perf_counter() - started
            seen += len(labels)
    return seen / elapsed


def epoch_time(recipe, splits: dict[str, list[Clip]], classes: int) -> dict:
    """One real epoch (training + validation) of the training loop: seconds and windows/s."""
    from coaudio.train.loop import accuracy, train_epoch

    model, optimizer = _model(recipe, classes)
    windows = len(splits["train"]) * recipe.data.windows_per_clip
    started = time.perf_counter()
    train_epoch(model, model, optimizer, {"train": splits["train"]}, recipe, 0, None)
    trained = time.perf_counter() - started
    accuracy(model, splits["valid"], recipe)
    seconds = time.perf_counter() - started
    return {
        "epoch_s": seconds,
        "train_s": trained,
        "valid_s": seconds - trained,
        "windows_per_s": windows / trained,
    }


def run(quick: bool = False, threads: int = 0) -> dict:
    """Every row; ``threads`` 0 picks what training would (idle cores)."""
    shape = QUICK_SHAPE if quick else GTZAN_SHAPE
    threads = batch_threads(threads)
    set_threads(threads)
    learned = shipped_recipe("gtzan")
    splits = random_clips(shape)
    before = per_window_rate(learned, splits["train"], shape["classes"], batches=2 if quick else 6)
    after = epoch_time(learned, splits, shape["classes"])
    started = time.perf_counter()
    frozen_splits = {
        name: [Clip(patch_stats(c.tokens), c.label, c.track_id) for c in clips]
        for name, clips in splits.items()
    }
    caching_s = time.perf_counter() - started
    del splits
    frozen_recipe = shipped_recipe("gtzan-melstats")
    frozen = epoch_time(frozen_recipe, frozen_splits, shape["classes"])
    windows = shape["train"] * learned.data.windows_per_clip
    before_epoch = windows / before + after["valid_s"]  # validation was never per window
    rows = [
        {"path": "gtzan, per-window batches (before)", "windows_per_s": before, "epoch_s": before_epoch},
        {"path": "gtzan, shared batches", **after},
        {"path": "gtzan-melstats, frozen tokens", **frozen, "caching_s": caching_s},
    ]
    for row, recipe in zip(rows, (learned, learned, frozen_recipe)):
        row["epochs"] = recipe.train.epochs
        row["run_min"] = recipe.train.epochs * row["epoch_s"] / 60
    return {"shape": shape, "threads": threads, "windows_per_epoch": windows, "rows": rows}
