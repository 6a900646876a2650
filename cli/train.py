"""``coaudio train``: train a continual classifier on a labelled folder tree or on GTZAN."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail, interrupted, resume_command

app = typer.Typer(help="Train a continual transformer classifier.", no_args_is_help=True)

# Options shared by both commands.
Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, metrics, config).")]
# A str, not a Path checked by Typer: it may also name a shipped recipe (see _recipe).
RecipeFile = Annotated[
    Optional[str],
    typer.Option(
        "--recipe",
        metavar="NAME|FILE",
        help="Recipe TOML file, or a shipped recipe's name (synth, gtzan; see coaudio recipes); "
        "default: built-in defaults.",
    ),
]
Overrides = Annotated[
    list[str],
    typer.Option("--set", help="Override a recipe setting, e.g. --set train.epochs=10 (repeatable)."),
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out after an interruption.")]
Cache = Annotated[
    Optional[Path], typer.Option("--cache", help="Feature cache (default: <out>/../.coaudio-cache).")
]
Jobs = Annotated[int, typer.Option("--jobs", min=1, help="Feature extraction processes.")]
Force = Annotated[
    bool, typer.Option("--force", help="Start over in an --out folder that holds a run, replacing it.")
]
Threads = Annotated[
    int,
    typer.Option(
        "--threads",
        min=0,
        help="torch threads (0: the idle cores, divided among torchrun's local processes).",
    ),
]


@app.command("folder")
def folder_cli(
    root: Annotated[
        Path, typer.Argument(help="Folder of <label>/<audio files> (e.g. from coaudio data synth).")
    ],
    out: Out,
    recipe: RecipeFile = None,
    set_: Overrides = (),  # Typer gives a list; the default is never mutated
    resume: Resume = False,
    cache: Cache = None,
    jobs: Jobs = 2,
    force: Force = False,
    threads: Threads = 0,
) -> None:
    """Train on any labelled folder tree; splits are seeded random 80/10/10."""
    from coaudio.data.gtzan import random_split
    from coaudio.data.tracks import DatasetError, list_labelled

    _check_out(out, resume, force)
    try:
        tracks = list_labelled(root)
    except DatasetError as exc:
        fail(exc)
    cfg = _recipe(recipe, set_, threads, out if resume else None)
    _run(cfg, random_split(tracks, seed=cfg.train.seed), out, RunOptions(root, resume, force, cache, jobs))


@app.command("gtzan")
def gtzan_cli(
    root: Annotated[Path, typer.Argument(help="GTZAN folder (either layout).")],
    out: Out,
    recipe: RecipeFile = None,
    set_: Overrides = (),  # Typer gives a list; the default is never mutated
    resume: Resume = False,
    cache: Cache = None,
    jobs: Jobs = 2,
    force: Force = False,
    threads: Threads = 0,
) -> None:
    """Train on GTZAN; data.split = filtered (fault-filtered 443/197/290) or random."""
    from coaudio.data.gtzan import GTZANError, filtered_split, list_tracks, random_split

    _check_out(out, resume, force)
    try:
        tracks = list_tracks(root)
    except GTZANError as exc:
        fail(exc)
    cfg = _recipe(recipe, set_, threads, out if resume else None)
    splits = (
        filtered_split(tracks) if cfg.data.split == "filtered" else random_split(tracks, seed=cfg.train.seed)
    )
    _run(cfg, splits, out, RunOptions(root, resume, force, cache, jobs))


def _recipe(spec: Optional[str], overrides: list[str], threads: int = 0, resuming: Optional[Path] = None):
    """The recipe to train with: ``spec`` is a file path (which wins) or a shipped recipe's
    name; None means the built-in defaults, or, when ``resuming`` a run, the run's own recipe.
    Any problem is a one-line error (exit 1)."""
    from coaudio import recipes
    from coaudio.config import (
        ConfigError,
        from_dict,
        load,
        merge,
        parse_overrides,
        to_dict,
    )
    from coaudio.train.config import Recipe

    try:
        if spec is None:
            base = to_dict(Recipe())
            if resuming is not None and (resuming / "config.json").is_file():
                import json

                base = json.loads((resuming / "config.json").read_text())["recipe"]
            recipe = from_dict(Recipe, merge(base, parse_overrides(overrides)))
        else:
            with recipes.locate(spec) as path:
                recipe = load(Recipe, path, overrides)
    except ConfigError as exc:
        fail(exc)
    if threads:
        from dataclasses import replace

        recipe = replace(recipe, train=replace(recipe.train, threads=threads))
    return recipe


def _check_out(out: Path, resume: bool, force: bool) -> None:
    """Before any work: the options agree, and a used --out is not started over silently."""
    from coaudio.runs import check_out
    from coaudio.train.run import RunError

    if resume and force:
        raise typer.BadParameter("--resume continues the run in --out and --force replaces it: give one")
    try:
        check_out(out, resume, force)
    except RunError as exc:
        fail(exc)


@dataclass(frozen=True)
class RunOptions:
    data_root: Path
    resume: bool
    force: bool
    cache: Optional[Path]
    jobs: int


def _run(cfg, track_splits: dict, out: Path, options: RunOptions) -> None:
    """coaudio.runs.train_run with rich progress, one-line errors and the resume command on Ctrl-C."""
    from coaudio.runs import Callbacks, train_run
    from coaudio.train.run import RunError

    err = err_console(quiet=int(os.environ.get("RANK", "0")) != 0)  # torchrun: rank 0 reports
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    finished = {"epoch": 0, "stage": "extracting"}
    task = progress.add_task("batches", total=None, epoch=1)

    def on_epoch(report) -> None:
        finished["epoch"] = report.epoch
        progress.update(task, epoch=report.epoch + 1, completed=0)
        err.print(
            f"epoch {report.epoch}: loss {report.loss:.4f}, train {report.train_accuracy:.3f}, "
            f"valid {report.valid_accuracy:.3f}",
            highlight=False,
        )

    def on_batch(done: int, total: int) -> None:
        if finished["stage"] != "training":  # started here, after the extraction spinner ended
            finished["stage"] = "training"
            progress.start()
        progress.update(task, completed=done, total=total)

    def note(text: str) -> None:
        err.print(text, highlight=False, markup=False)

    calls = Callbacks(note, lambda: err.status("extracting features"), on_epoch, on_batch)
    try:
        result = train_run(
            cfg,
            track_splits,
            out,
            options.data_root,
            options.resume,
            options.force,
            options.cache,
            options.jobs,
            calls,
        )
    except RunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        _interrupted(out, finished)
    finally:
        progress.stop()
    if result.trained and result.rank == 0:
        _final_table(result.recipe, result.splits, out)


def _interrupted(out: Path, finished: dict) -> None:
    if finished["stage"] == "extracting" and not (out / "last.safetensors").exists():
        interrupted(
            "interrupted while extracting features; what was extracted is cached, so running the "
            "same command again continues from there"
        )
    if not (out / "last.safetensors").exists():
        interrupted(
            "interrupted before the first epoch ended; nothing was saved, so running the same "
            "command again starts over"
        )
    done = f"after epoch {finished['epoch']}" if finished["epoch"] else "before the next epoch ended"
    interrupted(
        f"interrupted {done}; {out} keeps every finished epoch. Resume with:\n"
        f"  {resume_command(drop=('--force',))}"
    )


def _final_table(cfg, splits: dict, out: Path) -> None:
    from coaudio.models.checkpoint import load_checkpoint
    from coaudio.train.loop import accuracy

    model, _, info = load_checkpoint(out / "best.safetensors")
    out_console().print(f"{out}: best checkpoint (epoch {info['epoch']})", highlight=False, soft_wrap=True)
    table = Table()  # the heading above is its own line: a title would wrap mid-path
    for column in ("split", "clips", "clip accuracy"):
        table.add_column(column, justify="right")
    for name in ("train", "valid", "test"):
        if splits.get(name):
            table.add_row(name, str(len(splits[name])), f"{accuracy(model, splits[name], cfg):.3f}")
    out_console().print(table)
