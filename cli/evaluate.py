"""``coaudio evaluate RUN``: clip metrics of the best checkpoint, optionally hop by hop."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail, interrupted


@dataclass
class Evaluated:
    """The batch evaluation of one split: what the table, the plots and the JSON are made of."""

    report: Any  # coaudio.train.evaluate.BatchReport
    model: Any
    recipe: Any
    clips: list
    document: dict


def evaluate_cli(
    run: Annotated[
        Path,
        typer.Argument(
            help="Run folder from coaudio train (works from any directory), or a checkpoint file "
            "(.safetensors) together with --data DIR."
        ),
    ],
    split: Annotated[str, typer.Option(help="train, valid or test (of a run folder).")] = "test",
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            file_okay=False,
            help="With a run folder: where its dataset folder is now, if it moved since training. With a "
            "checkpoint file: a labelled <label>/<files> folder to evaluate on, all of it.",
        ),
    ] = None,
    streaming: Annotated[
        bool, typer.Option("--streaming", help="Also run every clip hop by hop through the continual step.")
    ] = False,
    compare_clips: Annotated[
        int, typer.Option(min=0, help="Clips whose every hop is also recomputed regularly (check + timing).")
    ] = 3,
    cache: Annotated[
        Path, typer.Option(help="Feature cache (default: .coaudio-cache beside the run).")
    ] = None,
) -> None:
    """Accuracy, per-class precision/recall/F1 and confusion matrix (table + PNG) on a split of a
    run, or on a labelled folder for a checkpoint; --streaming adds the accuracy-versus-time
    curve (PNG + CSV) and continual == regular.

    Results go to eval/ beside the checkpoint and are only written when every step succeeded."""
    err, out = err_console(), out_console()
    if data is not None and not data.is_dir():
        fail(f"--data {data}: no such folder")
    source = _source(run, split, data, err)
    try:
        done = _batch(source, cache, err)
        _print_table(out, source, done)
        stream = _streaming(done, compare_clips, err, out, source.tag) if streaming else None
    except KeyboardInterrupt:
        interrupted(f"interrupted: nothing was written, {source.eval_dir} is as it was")
    _write(source.eval_dir, source.tag, done, stream, source.labels)
    err.print(f"wrote {source.eval_dir}", highlight=False)


def _source(run: Path, split: str, data: Optional[Path], err: Console):
    """The run's split (files found again, missing ones reported) or a checkpoint's folder."""
    from coaudio.train.run import RunError, RunFolder, folder_source, missing_data_message, run_source

    try:
        if run.is_file():
            if data is None:
                fail(
                    f"{run} is a file: give a run folder, or a checkpoint with the labelled folder to "
                    "evaluate it on (--data DIR)"
                )
            return folder_source(run, data)
        folder = RunFolder(run)
        source, files = run_source(folder, split, data)
    except RunError as exc:
        fail(exc)
    if not files.found:
        fail(missing_data_message(folder, split, files, data))
    if files.missing:
        err.print(
            f"[yellow]warning[/yellow]: {missing_data_message(folder, split, files, data)}; evaluating the "
            f"{len(files.found)} that were found",
            highlight=False,
            soft_wrap=True,
        )
    return source


def _batch(source, cache: Optional[Path], err: Console) -> Evaluated:
    from coaudio.config import ConfigError
    from coaudio.models.checkpoint import load_checkpoint
    from coaudio.threads import batch_threads, set_threads
    from coaudio.train.data import load_clips
    from coaudio.train.evaluate import batch_report

    try:
        model, _, info = load_checkpoint(source.checkpoint)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        fail(exc)
    set_threads(batch_threads())
    with err.status(f"evaluating {len(source.tracks)} clips"):
        clips, problems = load_clips(
            source.tracks, source.labels, cache or source.default_cache, source.recipe.frontend, bar=False
        )
    for problem in problems:
        err.print(f"[yellow]skipped[/yellow] {problem}", highlight=False, soft_wrap=True)
    if not clips:
        fail(
            f"none of the {len(source.tracks)} files could be read (see the messages above); "
            f"nothing was evaluated and {source.eval_dir} was left as it was"
        )
    report = batch_report(model, clips, source.recipe, source.labels)
    document = {
        "split": source.tag,
        "evaluated": source.title + ")",
        "checkpoint_epoch": info.get("epoch"),
        "clips": len(clips),
        "missing": source.missing,
        "unreadable": problems,
        "accuracy": report.accuracy,
        "per_class": report.per_class,
        "confusion": report.confusion,
    }
    return Evaluated(report, model, source.recipe, clips, document)


def _print_table(out: Console, source, done: Evaluated) -> None:
    report, document = done.report, done.document
    left_out = len(document["missing"]) + len(document["unreadable"])
    note = f" ({left_out} left out)" if left_out else ""
    epoch = document["checkpoint_epoch"]
    table = Table(
        title=f"{source.title}{f', best checkpoint from epoch {epoch}' if epoch else ''}): "
        f"accuracy {report.accuracy:.3f} on {len(done.clips)} clips{note}"
    )
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="right")
    for row in report.per_class:
        table.add_row(
            row["label"],
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    out.print(table)


def _streaming(done: Evaluated, compare_clips: int, err: Console, out: Console, split: str):
    from coaudio.online.evaluation import streaming_report

    model, recipe, clips = done.model, done.recipe, done.clips
    with err.status("streaming every clip hop by hop"):
        embed = None
        if recipe.frontend.kind == "vggish":
            from coaudio.features.cache import vggish_embed

            embed = vggish_embed(recipe.frontend.weights, recipe.frontend.pca)
        stream = streaming_report(
            model, [c.path for c in clips], [c.label for c in clips], recipe.frontend, compare_clips, embed
        )
    what = "labelled folder" if split == "folder" else f"{split} split"
    final = stream.curve[-1]["accuracy"] if stream.curve else float("nan")
    out.print(
        f"streaming ({what}): accuracy {stream.curve[0]['accuracy']:.3f} after the first hop "
        f"({stream.curve[0]['time_s']:.2f} s), {final:.3f} at the last; "
        f"continual == regular over {stream.compared_hops} hops: max |logit diff| "
        f"{stream.max_logit_diff:.1e}; per hop {stream.continual_us:.0f} us continual vs "
        f"{stream.regular_us:.0f} us regular (1 thread); FLOPs {stream.continual_flops / 1e6:.2f} M vs "
        f"{stream.regular_flops / 1e6:.1f} M per prediction",
        highlight=False,
        soft_wrap=True,
    )
    return stream


def _write(eval_dir: Path, split: str, done: Evaluated, stream, labels: list[str]) -> None:
    """Everything at the end, each file atomically, so a failed evaluation never replaces results."""
    from coaudio.safeio import write_text_atomically
    from coaudio.train.plots import save_confusion_png, save_curve

    document = done.document
    try:
        eval_dir.mkdir(exist_ok=True)
        save_confusion_png(done.report, labels, eval_dir / f"confusion-{split}.png")
        if stream is not None:
            save_curve(stream, eval_dir / f"per-hop-{split}.png", eval_dir / f"per-hop-{split}.csv")
            document["streaming"] = stream.__dict__
        else:  # an earlier --streaming curve would no longer match these metrics
            for suffix in ("png", "csv"):
                (eval_dir / f"per-hop-{split}.{suffix}").unlink(missing_ok=True)
        write_text_atomically(eval_dir / f"metrics-{split}.json", json.dumps(document, indent=1) + "\n")
    except OSError as exc:
        fail(f"cannot write the results to {eval_dir}: {exc.strerror or exc}")
