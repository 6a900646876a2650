"""``coaudio evaluate RUN``: clip metrics of the best checkpoint, optionally hop by hop."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def evaluate_cli(
    run: Path = typer.Argument(..., exists=True, file_okay=False, help="Run folder from coaudio train."),
    split: str = typer.Option("test", help="train, valid or test."),
    streaming: bool = typer.Option(False, "--streaming", help="Also run every clip hop by hop through the continual step."),
    compare_clips: int = typer.Option(3, min=0, help="Clips whose every hop is also recomputed regularly (check + timing)."),
    cache: Path = typer.Option(None, help="Feature cache (default: <run>/../.coaudio-cache)."),
) -> None:
    """Accuracy, per-class precision/recall/F1 and confusion matrix (table + PNG) on a split;
    --streaming adds the accuracy-versus-time curve (PNG + CSV) and continual == regular."""
    from coaudio.config import from_dict
    from coaudio.data.tracks import Track
    from coaudio.models.checkpoint import load_checkpoint
    from coaudio.train.config import Recipe
    from coaudio.train.data import load_clips
    from coaudio.train.evaluate import batch_report, streaming_report
    from coaudio.train.plots import save_confusion_png, save_curve

    err, out = Console(stderr=True), Console()
    config = json.loads((run / "config.json").read_text())
    recipe, labels = from_dict(Recipe, config["recipe"]), config["labels"]
    if split not in config["paths"]:
        raise typer.BadParameter(f"split {split!r} not in this run; it has {', '.join(config['paths'])}")
    model, _, info = load_checkpoint(run / "best.safetensors")
    tracks = [Track(Path(p), labels[t], i) for p, t, i in
              zip(config["paths"][split], config["targets"][split], config["splits"][split])]
    with err.status(f"evaluating {len(tracks)} {split} clips"):
        clips, problems = load_clips(tracks, labels, cache or run.parent / ".coaudio-cache",
                                     recipe.data.token_hop_frames, config=recipe.feature_config())
    for problem in problems:
        err.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    report = batch_report(model, clips, recipe, labels)
    folder = run / "eval"
    folder.mkdir(exist_ok=True)
    save_confusion_png(report, labels, folder / f"confusion-{split}.png")
    table = Table(title=f"{run} ({split}, best checkpoint from epoch {info['epoch']}): "
                        f"accuracy {report.accuracy:.3f} on {len(clips)} clips")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="right")
    for row in report.per_class:
        table.add_row(row["label"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                      str(row["support"]))
    out.print(table)
    document = {"split": split, "accuracy": report.accuracy, "per_class": report.per_class,
                "confusion": report.confusion}
    if streaming:
        with err.status("streaming every clip hop by hop"):
            embed = None
            if recipe.data.features == "vggish":
                from coaudio.features.cache import vggish_embed

                embed = vggish_embed(recipe.data.vggish_weights, recipe.data.vggish_pca)
            stream = streaming_report(model, [c.path for c in clips], [c.label for c in clips], recipe,
                                      compare_clips, embed)
        save_curve(stream, folder / f"per-hop-{split}.png", folder / f"per-hop-{split}.csv")
        document["streaming"] = stream.__dict__
        final = stream.curve[-1]["accuracy"] if stream.curve else float("nan")
        out.print(f"streaming: accuracy {stream.curve[0]['accuracy']:.3f} after the first hop "
                  f"({stream.curve[0]['time_s']:.2f} s), {final:.3f} at the last; "
                  f"continual == regular over {stream.compared_hops} hops: max |logit diff| "
                  f"{stream.max_logit_diff:.1e}; per hop {stream.continual_us:.0f} us continual vs "
                  f"{stream.regular_us:.0f} us regular; FLOPs {stream.continual_flops / 1e6:.2f} M vs "
                  f"{stream.regular_flops / 1e6:.1f} M per prediction", highlight=False)
    (folder / f"metrics-{split}.json").write_text(json.dumps(document, indent=1) + "\n")
    err.print(f"wrote {folder}")

