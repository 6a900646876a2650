"""``coaudio train folder ROOT --folds K``: K-fold cross-validation (coaudio.crossval) with
progress, a line per finished fold, the summary table and the resume command on Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from coaudio_cli.console import out_console
from coaudio_cli.errors import fail, interrupted, resume_command


def cross_validate(out: Path, options, make_recipe: Callable[[Path | None], object], run) -> None:
    """Plan (or re-read) the folds, train and test each one, print the summary.
    ``make_recipe(resuming)`` is the train command's recipe settling; ``run`` its RunOptions."""
    from coaudio.crossval import FoldCallbacks, check_folds_out, fold_dir, run_cross_validation
    from coaudio_cli.train import Reporter

    if run.resume and run.force:
        raise typer.BadParameter("--resume continues the run in --out and --force replaces it: give one")
    from coaudio_cli.cache_option import check_cache_option

    check_cache_option(run.cache)  # before any work: one error line, not one per clip
    try:
        check_folds_out(out, run.resume, run.force)
    except _errors() as exc:
        fail(exc)
    recipe = make_recipe(fold_dir(out, 1) if run.resume else None)
    folds = _plan(out, options, recipe.train.seed, run)
    reporter = Reporter()
    for line in folds.notes:
        reporter.note(line)
    current = {"fold": 0}

    def start(fold: int, count: int) -> None:
        current["fold"] = fold
        reporter.restart()
        reporter.note(f"fold {fold} of {count}: {fold_dir(out, fold)}")

    def done(result) -> None:
        reporter.stop()  # the fold's result on a line of its own, not on a leftover bar
        _fold_line(result)

    try:
        cv = run_cross_validation(
            recipe,
            folds,
            out,
            run.resume,
            run.force,
            run.cache,
            run.jobs,
            reporter.callbacks(),
            FoldCallbacks(start, done),
        )
    except _errors() as exc:
        reporter.stop()
        fail(exc)
    except KeyboardInterrupt:
        reporter.stop()  # first: the message must not land on a live bar
        interrupted(
            f"interrupted in fold {current['fold']} of {folds.count}; {out} keeps every finished fold and "
            f"epoch. Resume with:\n  {resume_command(drop=('--force',))}"
        )
    reporter.stop()
    if cv.results:
        _summary(cv, out)
        reporter.note(f"wrote {out / 'folds.json'}")


def _errors() -> tuple[type[Exception], ...]:
    from coaudio.data.tracks import DatasetError
    from coaudio.features.cache import CacheError
    from coaudio.train.run import RunError

    return (DatasetError, RunError, CacheError)


def _plan(out: Path, options, seed: int, run):
    """The folds (on resume, those folds.json recorded), any problem a one-line error."""
    from coaudio.crossval import plan_cross_validation

    try:
        return plan_cross_validation(run.data_root, options, seed, out, run.resume)
    except _errors() as exc:
        fail(exc)


def _fold_line(result) -> None:
    document = result.document
    epoch = document.get("checkpoint_epoch")
    best = f"; best checkpoint from epoch {epoch}" if epoch else ""
    out_console().print(
        f"fold {result.fold}: {document['evaluated'].removesuffix(')')}{best}): test accuracy "
        f"{result.accuracy:.3f} on {document['clips']} clips",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _summary(cv, out: Path) -> None:
    console = out_console()
    description = cv.folds.method().describe()
    std = "n/a" if cv.std is None else f"{cv.std:.3f}"  # undefined over one fold
    console.print(
        f"{out}: {len(cv.results)} of {cv.folds.count} folds, split: {description}; test accuracy "
        f"{cv.mean:.3f} +/- {std} (mean +/- sample standard deviation over folds)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    table = Table()  # the heading above is its own line: a title would wrap mid-path
    for column in ("fold", "train clips", "valid clips", "test clips", "test accuracy"):
        table.add_column(column, justify="right")
    for r in cv.results:
        counts = [str(r.sizes.get(name, 0)) for name in ("train", "valid", "test")]
        table.add_row(str(r.fold), *counts, f"{r.accuracy:.3f}", end_section=r is cv.results[-1])
    table.add_row("mean", "", "", "", f"{cv.mean:.3f}")
    table.add_row("std", "", "", "", std)
    console.print(table)
