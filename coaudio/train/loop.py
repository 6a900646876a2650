"""The training loop: seeded, resumable to the bit, best-on-validation checkpoint.

Run folder::

    config.json        resolved recipe, labels, split sizes
    metrics.jsonl      one line per finished epoch (metrics.csv + curves.png when training ends)
    best.safetensors   model checkpoint of the best epoch on validation (train.select)
    last.safetensors   full training state (model, optimizer, RNG, epoch, history), written
                       atomically after every epoch; --resume continues from it

Every epoch draws its windows from a generator seeded by (seed, epoch) and restores the
global RNG (dropout) saved with the state, so a run resumed after Ctrl-C or SIGKILL ends with
exactly the weights of an uninterrupted run (same machine and thread count).

Under torchrun (DistributedDataParallel, gloo on CPU, nccl on GPU) every rank draws the same
windows and takes its slice of each global batch; the loss is scaled so that the averaged
gradient equals the single-process mean over the global batch. Only rank 0 writes files, and
``distributed.json`` records how far the ranks' parameters ended apart (0 when in sync).
Bit-exact resume is guaranteed for single-process runs (each rank's dropout RNG differs).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from coaudio import progress
from coaudio.config import ConfigError, from_dict, to_dict
from coaudio.distributed import rank_and_world
from coaudio.models.checkpoint import differences, save_checkpoint
from coaudio.models.classifier import AudioClassifier, ModelConfig
from coaudio.safeio import save_safetensors_atomically, write_text_atomically
from coaudio.threads import batch_threads, local_processes, set_threads
from coaudio.train.augment import augment_patches, mixup_pairs
from coaudio.train.config import Recipe
from coaudio.train.data import Clip, evaluation_windows, shared_batch, training_windows
from coaudio.train.run import data_record
from coaudio.train.selection import best_epoch, early_stop_reason, score, stale_epochs

log = logging.getLogger(__name__)
STATE_FORMAT = "coaudio-train-state-1"


class TrainingDiverged(ConfigError):
    """The loss or the gradient stopped being a finite number: nothing more can be learned."""


@dataclass
class EpochReport:
    epoch: int
    loss: float
    train_accuracy: float
    valid_accuracy: float
    valid_loss: float  # mean over clips of -log(probability of the clip's label)


def build_model(recipe: Recipe, n_classes: int) -> AudioClassifier:
    """A fresh model for training ``recipe``."""
    shape = recipe.model
    inputs = recipe.frontend.model_inputs
    model = AudioClassifier(
        ModelConfig(
            n_classes=n_classes,
            inputs=inputs,
            token_dim=shape.token_dim,
            embedder_width=shape.embedder_width,
            encoder=shape.encoder,
            token_norm=shape.token_norm,
        )
    )
    # oneDNN's convolutions (forward and backward) run about 1.3x faster on channels-last
    # weights on a CPU; the values are the same, and checkpoints are saved contiguous
    return model.to(memory_format=torch.channels_last) if inputs == "patches" else model


def clip_predictions(
    model: AudioClassifier, clips: list[Clip], recipe: Recipe, batch_size: int = 64
) -> torch.Tensor:
    """``(clips, classes)`` probabilities: the mean over each clip's evaluation windows."""
    model.eval()
    per_clip = evaluation_windows(clips, recipe.model.encoder.window, recipe.data.eval_stride)
    flat = [(i, w) for i, ws in enumerate(per_clip) for w in ws]
    sums = torch.zeros(len(clips), model.cfg.n_classes)
    with torch.no_grad():
        for at in range(0, len(flat), batch_size):
            chunk = flat[at : at + batch_size]
            b = shared_batch(clips, [w for _, w in chunk])  # a clip's windows embed its patches once
            logits = model(b.tokens, start=b.start, key_mask=b.mask, index=b.index)
            sums.index_add_(0, torch.tensor([i for i, _ in chunk]), torch.softmax(logits, dim=-1))
    return sums / torch.tensor([len(ws) for ws in per_clip]).unsqueeze(1)


def validation(model: AudioClassifier, clips: list[Clip], recipe: Recipe) -> tuple[float, float]:
    """Clip accuracy and clip loss (mean -log probability of the label); NaN without clips."""
    if not clips:
        return float("nan"), float("nan")
    probs = clip_predictions(model, clips, recipe)
    labels = torch.tensor([c.label for c in clips])
    accuracy = float((probs.argmax(dim=1) == labels).float().mean())
    loss = float(-probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean())
    return accuracy, loss


def accuracy(model: AudioClassifier, clips: list[Clip], recipe: Recipe) -> float:
    return validation(model, clips, recipe)[0]


def _save_state(path: Path, model, optimizer, epoch: int, best: float, history: list[dict]) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = value.detach().contiguous().reshape(value.shape)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "format": STATE_FORMAT,
        "epoch": str(epoch),
        "best": json.dumps(best),
        "history": json.dumps(history),
        "param_groups": json.dumps(optim["param_groups"]),
    }
    save_safetensors_atomically(tensors, path, meta)


def _load_state(path: Path, model, optimizer) -> tuple[int, list[dict]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != STATE_FORMAT:
            raise ConfigError(f"{path}: not a coaudio training state")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["epoch"]), json.loads(meta["history"])  # "best" is derived from the history


def train(
    recipe: Recipe,
    splits: dict[str, list[Clip]],
    labels: list[str],
    out: Path,
    resume: bool = False,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    data_root: Path | None = None,
    split: dict | None = None,
) -> list[dict]:
    """Train on ``splits["train"]``, select on ``splits["valid"]``; returns the history.
    ``on_epoch(report)`` after each epoch; ``on_batch(batches done, batches, windows done)``
    before an epoch's first batch (0 done) and after every batch (all ranks' windows).
    ``data_root``: the dataset folder the clips came from (recorded so that evaluation can
    find the files again from any directory; default: the clips' common folder); ``split``:
    how the splits were made (a SplitMethod's dict), recorded in config.json."""
    rank, world = rank_and_world()
    out.mkdir(parents=True, exist_ok=True)
    opt = recipe.train
    threads = batch_threads(opt.threads, local_processes())
    set_threads(threads)
    log.info("training with %d torch thread(s)", threads)
    if rank == 0:
        _write_config(out, recipe, labels, splits, resume, data_root, split)
    frontend = to_dict(recipe.frontend)  # what streaming needs, stored in every checkpoint
    torch.manual_seed(opt.seed)
    model = build_model(recipe, len(labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    first_epoch, history = 0, []
    last = out / "last.safetensors"
    if model.cfg.token_norm:  # every rank holds every training clip: the same statistics
        model.set_token_stats(torch.cat([clip.tokens for clip in splits["train"]]))
    if resume and last.exists():
        first_epoch, history = _load_state(last, model, optimizer)
        log.info("resuming after epoch %d", first_epoch)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    # Python callers without callbacks get a tqdm bar over the epochs (coaudio.progress)
    shown = progress.bar(
        opt.epochs, "epochs", "epoch", enabled=on_epoch is None and on_batch is None and rank == 0
    )
    progress.advance(shown, first_epoch)
    for epoch in range(first_epoch, opt.epochs):
        if stale_epochs(history, opt.select) >= opt.patience > 0:
            log.info("stopping early after epoch %d: %s", epoch, early_stop_reason(history, opt.select))
            break
        report = train_epoch(model, net, optimizer, splits, recipe, epoch, on_batch)
        progress.advance(shown, 1, loss=f"{report.loss:.4f}", valid=f"{report.valid_accuracy:.3f}")
        history.append(report.__dict__)
        if rank == 0:
            best = best_epoch(history, opt.select)
            if best == len(history) - 1:
                save_checkpoint(
                    out / "best.safetensors",
                    model,
                    labels,
                    {"epoch": epoch + 1, **report.__dict__, "frontend": frontend},
                )
            _save_state(last, model, optimizer, epoch + 1, score(history[best], opt.select), history)
            write_text_atomically(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        if on_epoch is not None and rank == 0:
            on_epoch(report)
    progress.close(shown)
    if world > 1:
        spread = _parameter_spread(model)
        if rank == 0:
            (out / "distributed.json").write_text(
                json.dumps({"world_size": world, "max_parameter_spread": spread})
            )
    if history and rank == 0:
        from coaudio.train.plots import save_training_curves

        save_training_curves(history, out / "curves.png", out / "metrics.csv")
    return history


def train_epoch(model, net, optimizer, splits, recipe: Recipe, epoch: int, on_batch) -> EpochReport:
    """One pass; ``net`` is ``model`` or its DistributedDataParallel wrapper."""
    data, opt = recipe.data, recipe.train
    rank, world = rank_and_world()
    generator = torch.Generator().manual_seed(opt.seed * 1_000_003 + epoch)
    windows = training_windows(
        splits["train"], recipe.model.encoder.window, data.min_window, data.windows_per_clip, generator
    )
    # augmentation draws per rank (each rank augments its own slice), seeded by epoch: a
    # resumed run draws what an uninterrupted one would
    augmenting = torch.Generator().manual_seed((opt.seed * 1_000_003 + epoch) * 1_009 + rank)
    model.train()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, windows (this rank)
    batches = [windows[at : at + opt.batch_size] for at in range(0, len(windows), opt.batch_size)]
    batches = [b for b in batches if len(b) >= world]  # every rank needs at least one window
    warmup_steps = opt.warmup_epochs * len(batches)  # linear learning-rate warm-up from 0
    if on_batch is not None and rank == 0:
        on_batch(0, len(batches), 0)  # the epoch starts
    for n, global_batch in enumerate(batches):
        # a contiguous share: a clip's windows stay on one rank, which embeds its patches once
        local = global_batch[len(global_batch) * rank // world : len(global_batch) * (rank + 1) // world]
        b = shared_batch(splits["train"], local)
        tokens = b.tokens
        if model.cfg.inputs == "patches":
            tokens = augment_patches(tokens, b.owner, opt.augment, augmenting)
        mix = mixup_pairs(b.rows, opt.augment.mixup, augmenting)
        logits = net(tokens, start=b.start, key_mask=b.mask, index=b.index, mix=mix)
        losses = F.cross_entropy(logits, b.labels, reduction="none", label_smoothing=opt.label_smoothing)
        if mix is not None:
            partner, weight = mix
            theirs = F.cross_entropy(
                logits, b.labels[partner], reduction="none", label_smoothing=opt.label_smoothing
            )
            losses = weight * losses + (1 - weight) * theirs
        # sum * world / global size: DDP's gradient average is then the global-batch mean
        loss = losses.sum() * (world / len(global_batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # after DDP's all-reduce every rank sees the same gradient: they clip, and stop, alike
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip or math.inf)
        # (a rank's own loss decides alone only without ranks to wait for it)
        if not math.isfinite(norm) or (world == 1 and not math.isfinite(loss.item())):
            raise TrainingDiverged(
                f"the training loss became {loss.item()} in epoch {epoch + 1} (batch {n + 1}): the "
                "learning rate, the augmentation or the data are too extreme; the run keeps its "
                f"last finished epoch ({epoch}), nothing of this one was saved"
            )
        for group in optimizer.param_groups:  # a pure function of the step: resume needs no state
            group["lr"] = opt.lr * min(1.0, (epoch * len(batches) + n + 1) / max(1, warmup_steps))
        optimizer.step()
        totals += torch.tensor(
            [
                loss.item() * len(global_batch) / world,
                float((logits.argmax(dim=1) == b.labels).sum()),
                float(len(local)),
            ],
            dtype=torch.float64,
        )
        if on_batch is not None and rank == 0:
            on_batch(n + 1, len(batches), sum(len(chunk) for chunk in batches[: n + 1]))
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(totals)
    valid_accuracy, valid_loss = validation(model, splits.get("valid", []), recipe)
    seen = max(float(totals[2]), 1.0)
    return EpochReport(
        epoch + 1, float(totals[0]) / seen, float(totals[1]) / seen, valid_accuracy, valid_loss
    )


def _parameter_spread(model) -> float:
    """Largest difference between any rank's parameters and rank 0's."""
    import torch.distributed as dist

    spread = torch.zeros(1, dtype=torch.float64)
    for p in model.parameters():
        reference = p.detach().clone()
        dist.broadcast(reference, src=0)
        spread = torch.maximum(spread, (p.detach() - reference).abs().max().double().reshape(1))
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    return float(spread)


def _write_config(
    out: Path,
    recipe: Recipe,
    labels: list[str],
    splits: dict,
    resume: bool,
    data_root: Path | None,
    split: dict | None,
) -> None:
    if data_root is None:
        every = [os.path.abspath(c.path) for clips in splits.values() for c in clips]
        data_root = Path(os.path.commonpath(every)) if every else out
    document = {
        "recipe": to_dict(recipe),
        "labels": labels,
        "splits": {name: [c.track_id for c in clips] for name, clips in splits.items()},
        "paths": {name: [os.path.abspath(c.path) for c in clips] for name, clips in splits.items()},
        "targets": {name: [c.label for c in clips] for name, clips in splits.items()},
        **data_record(data_root, out, splits, split),
    }
    path = out / "config.json"
    if resume and path.exists():
        check_resumable(out, recipe, labels)
    write_text_atomically(path, json.dumps(document, indent=1) + "\n")


def check_resumable(out: Path, recipe: Recipe, labels: list[str]) -> int:
    """Epochs the run in ``out`` has finished (0 if none); raises ConfigError naming every
    setting that differs from the run's, since only ``train.epochs`` (and the thread count,
    which changes rounding only) may change on resume."""
    path = out / "config.json"
    if not path.exists():
        return 0
    saved = json.loads(path.read_text())
    free = lambda r: {**r, "train": {**r["train"], "epochs": None, "threads": None, "patience": None}}  # noqa: E731
    then = to_dict(from_dict(Recipe, saved["recipe"]))  # in today's spelling (older runs are migrated)
    changed = differences(free(then), free(to_dict(recipe)), names=("run", "now"))
    if saved["labels"] != labels:
        changed = "; ".join(filter(None, [changed, f"labels: run {saved['labels']}, now {labels}"]))
    if changed:
        raise ConfigError(
            f"{out} was trained with other settings ({changed}); resume with the run's "
            "settings (only train.epochs and train.patience may change), or use a new --out"
        )
    return finished_epochs(out)


def finished_epochs(out: Path) -> int:
    """Epochs saved in ``out/last.safetensors`` (0 when there is none)."""
    last = out / "last.safetensors"
    if not last.exists():
        return 0
    with safe_open(str(last), framework="pt") as f:
        return int((f.metadata() or {}).get("epoch", 0))
