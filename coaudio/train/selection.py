"""Which epoch is best, and when to stop: validation accuracy or validation loss.

``train.select = "accuracy"`` (the default) keeps the epoch with the highest validation clip
accuracy; ``"loss"`` the one with the lowest validation clip loss (the mean negative log of
each clip's probability for its label), which moves smoothly where a small validation set makes
accuracy jump by several points from one epoch to the next. ``train.patience`` counts the
epochs since that best one; the first best counts, a tie does not renew patience.
"""

from __future__ import annotations

from pathlib import Path

from coaudio.train.run import read_metrics

SELECT = ("accuracy", "loss")


def score(entry: dict, select: str) -> float:
    """Higher is better: validation accuracy, or minus validation loss."""
    return entry["valid_accuracy"] if select == "accuracy" else -entry["valid_loss"]


def best_epoch(history: list[dict], select: str = "accuracy") -> int:
    """Index into ``history`` of the first best epoch (-1 when there is none)."""
    if not history:
        return -1
    scores = [score(h, select) for h in history]
    return scores.index(max(scores))


def stale_epochs(history: list[dict], select: str = "accuracy") -> int:
    """Epochs since the best one."""
    return len(history) - 1 - best_epoch(history, select) if history else 0


def early_stop_reason(history: list[dict], select: str = "accuracy") -> str:
    """Why a run with ``train.patience`` ended before ``train.epochs``, in words."""
    best = history[best_epoch(history, select)]
    value = best["valid_accuracy"] if select == "accuracy" else best["valid_loss"]
    return (
        f"no better validation {select} for {stale_epochs(history, select)} epoch(s) "
        f"(best {value:.3f} after epoch {best['epoch']})"
    )


def stopped_early(out: Path, patience: int, select: str = "accuracy") -> str | None:
    """The reason the run in ``out`` stopped early under ``patience``, or None."""
    history = read_metrics(out)
    if patience <= 0 or not history:
        return None
    return early_stop_reason(history, select) if stale_epochs(history, select) >= patience else None
