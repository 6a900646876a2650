"""``coaudio evaluate RUN``: clip metrics of the best checkpoint, optionally hop by hop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail, interrupted


def evaluate_cli(
    run: Annotated[
        Path,
        typer.Argument(
            help="Run folder from coaudio train (works from any directory), or a checkpoint file "
            "(.safetensors) together with --data DIR."
        ),
    ],
    split: Annotated[
        Optional[str], typer.Option(help="train, valid or test (of a run folder; default test).")
    ] = None,
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
    from coaudio.features.cache import CacheError
    from coaudio.runs import evaluate_batch, evaluation_source, write_evaluation
    from coaudio.train.run import RunError
    from coaudio_cli.cache_option import check_cache_option

    if split is not None and data is not None and run.is_file():
        raise typer.BadParameter(
            f"{split!r}: a checkpoint with --data is evaluated on all of {data} (a labelled "
            "folder has no splits); --split picks a split of a run folder",
            param_hint="--split",
        )
    split = split or "test"
    check_cache_option(cache)  # before any work: not one failure per clip
    err, out = err_console(), out_console()

    def note(text: str) -> None:
        err.print(text, highlight=False, markup=False)

    try:
        source = evaluation_source(run, split, data, note)
        with err.status(f"evaluating {len(source.tracks)} clips"):
            done = evaluate_batch(source, cache, note)
        _print_table(out, done)
        if streaming:
            _streaming(done, compare_clips, err, out)
    except KeyboardInterrupt:
        interrupted("interrupted: nothing was written; eval/ is as it was")
    except (RunError, CacheError) as exc:  # CacheError: the default cache cannot be made
        fail(exc)
    try:
        err.print(f"wrote {write_evaluation(done)}", highlight=False)
    except RunError as exc:
        fail(exc)


def _print_table(out: Console, done) -> None:
    report, document, source = done.report, done.document, done.source
    left_out = len(document["missing"]) + len(document["unreadable"])
    note = f" ({left_out} left out)" if left_out else ""
    epoch = document["checkpoint_epoch"]
    # the heading is its own line: a table title would wrap to the table's width, mid-path
    out.print(
        f"{source.title}{f'; best checkpoint from epoch {epoch}' if epoch else ''}): "
        f"accuracy {report.accuracy:.3f} on {len(done.clips)} clips{note}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    table = Table()
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


def _streaming(done, compare_clips: int, err: Console, out: Console) -> None:
    from coaudio.runs import evaluate_streaming

    with err.status("streaming every clip hop by hop"):
        stream = evaluate_streaming(done, compare_clips)
    split, method = done.source.tag, done.source.split.get("description", "")
    what = f"split: {method}" if split == "folder" else f"{split} split: {method}"
    final = stream.curve[-1]["accuracy"] if stream.curve else float("nan")
    if stream.compared_hops:
        kind = done.source.recipe.frontend.kind
        fixed = "" if kind == "learned" else f", the {kind} tokens computed once for both"
        check = (
            f"continual == regular over {stream.compared_hops} hops: max |logit diff| "
            f"{stream.max_logit_diff:.1e}; per hop {stream.continual_us:.0f} us continual vs "
            f"{stream.regular_us:.0f} us regular (1 thread{fixed})"
        )
    else:  # --compare-clips 0: nothing was recomputed regularly, so there is nothing to claim
        check = (
            "continual vs regular: not compared (--compare-clips 0); per hop "
            f"{stream.continual_us:.0f} us continual (1 thread)"
        )
    out.print(
        f"streaming ({what}): accuracy {stream.curve[0]['accuracy']:.3f} after the first hop "
        f"({stream.curve[0]['time_s']:.2f} s), {final:.3f} at the last; "
        f"{check}; FLOPs {stream.continual_flops / 1e6:.2f} M vs "
        f"{stream.regular_flops / 1e6:.1f} M per prediction",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
