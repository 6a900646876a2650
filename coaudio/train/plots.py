"""PNG plots and CSV files for runs and evaluations (matplotlib with the Agg backend)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def save_training_curves(history: list[dict], png: Path, csv: Path) -> None:
    """Loss and accuracies per epoch, as CSV and as a two-panel PNG."""
    columns = [
        c for c in ("epoch", "loss", "train_accuracy", "valid_accuracy", "valid_loss") if c in history[0]
    ]
    csv.write_text(
        ",".join(columns)
        + "\n"
        + "".join(
            ",".join(f"{h[c]:.6g}" if isinstance(h[c], float) else str(h[c]) for c in columns) + "\n"
            for h in history
        )
    )
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    right.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train windows")
    right.plot(epochs, [h["valid_accuracy"] for h in history], marker="o", label="valid clips")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1.02)
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def save_confusion_png(report, labels: list[str], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(labels), 0.8 + 0.6 * len(labels)))
    ax.imshow(report.confusion, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(report.confusion):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {report.accuracy:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_curve(report, png: Path, csv: Path) -> None:
    plt = _pyplot()
    csv.write_text(
        "hop,time_s,accuracy,clips\n"
        + "".join(f"{p['hop']},{p['time_s']:.4f},{p['accuracy']:.4f},{p['clips']}\n" for p in report.curve)
    )
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p["time_s"] for p in report.curve], [p["accuracy"] for p in report.curve])
    ax.set_xlabel("elapsed audio (s)")
    ax.set_ylabel("accuracy of the current prediction")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
