"""``coaudio train``: train a continual classifier on a labelled folder tree or on GTZAN."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from coaudio import distributed
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


def _settled(recipe, out: Path, resume: bool):
    """The recipe as the run records it: absolute weight-file paths (config.json and the
    checkpoints then work from any directory) and a concrete thread count: the one asked for,
    else on resume the run's own (so the arithmetic, and the resumed weights, stay the same),
    else chosen now from the idle cores."""
    import json
    import os
    from dataclasses import replace

    from coaudio.threads import batch_threads, local_processes

    frontend = recipe.frontend
    frontend = replace(
        frontend,
        **{
            name: os.path.abspath(getattr(frontend, name))
            for name in ("weights", "pca")
            if getattr(frontend, name)
        },
    )
    data = replace(recipe.data, frontend=frontend)
    threads = recipe.train.threads
    if not threads and resume and (out / "config.json").is_file():
        threads = json.loads((out / "config.json").read_text())["recipe"]["train"].get("threads", 0)
    chosen = batch_threads(threads, local_processes())
    return replace(recipe, data=data, train=replace(recipe.train, threads=chosen))


RUN_FILES = (
    "config.json",
    "best.safetensors",
    "last.safetensors",
    "metrics.jsonl",
    "metrics.csv",
    "curves.png",
    "distributed.json",
    "eval",
)


def _check_out(out: Path, resume: bool, force: bool) -> None:
    """Never start over silently in a folder that holds a run (a finished epoch or more)."""
    if resume and force:
        raise typer.BadParameter("--resume continues the run in --out and --force replaces it: give one")
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: exists and is not a folder")
    holds_run = any((out / name).exists() for name in ("best.safetensors", "last.safetensors"))
    if holds_run and not resume and not force:
        fail(
            f"{out} already holds a training run; add --resume to continue it, or --force to start "
            "over and replace it"
        )


def _clear_run(out: Path) -> None:
    """--force: remove the files of the previous run (only those; the folder may hold others)."""
    import shutil

    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


@dataclass(frozen=True)
class RunOptions:
    data_root: Path
    resume: bool
    force: bool
    cache: Optional[Path]
    jobs: int


def _run(cfg, track_splits: dict, out: Path, options: RunOptions) -> None:
    rank = distributed.join()
    err = err_console(quiet=rank != 0)
    labels = sorted({t.label for tracks in track_splits.values() for t in tracks})
    cfg = _settled(cfg, out, options.resume)
    if _nothing_to_train(cfg, labels, out, options, err):
        return
    _check_split_sizes({name: len(tracks) for name, tracks in track_splits.items()})
    if options.force and rank == 0:
        _clear_run(out)
    try:
        splits = _load_splits(cfg, track_splits, labels, out, options, rank, err)
    except KeyboardInterrupt:
        interrupted(
            "interrupted while extracting features; what was extracted is cached, so running the "
            "same command again continues from there"
        )
    _check_split_sizes({name: len(clips) for name, clips in splits.items()})
    err.print(
        "clips: "
        + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        + f"; {cfg.train.threads} torch thread(s)",
        highlight=False,
    )
    _train_with_progress(cfg, splits, labels, out, options, err)
    distributed.leave()  # not on errors: a failed rank must not wait at a barrier for the others
    if rank == 0:
        _final_table(cfg, splits, out)


def _nothing_to_train(cfg, labels: list[str], out: Path, options: RunOptions, err) -> bool:
    """--resume: refuse other settings before any work, and say what was found."""
    from coaudio.config import ConfigError
    from coaudio.train.loop import check_resumable

    if not options.resume:
        return False
    if not (out / "last.safetensors").exists():
        err.print(f"nothing to resume in {out} (no finished epoch): starting a new run", highlight=False)
        return False
    try:
        finished = check_resumable(out, cfg, labels)
    except ConfigError as exc:
        fail(exc)
    if finished >= cfg.train.epochs:
        err.print(
            f"{out} has already finished {finished} epoch(s) (train.epochs = {cfg.train.epochs}): "
            "nothing to train; to train longer, resume with --set train.epochs=N",
            highlight=False,
        )
        return True
    err.print(f"resuming {out} after epoch {finished} of {cfg.train.epochs}", highlight=False)
    return False


def _check_split_sizes(sizes: dict[str, int]) -> None:
    """Training needs clips to learn from and validation clips to choose the best epoch."""
    for name in ("train", "valid"):
        if not sizes.get(name):
            total = sum(sizes.values())
            fail(
                f"the {name} split has no clips ({', '.join(f'{k} {v}' for k, v in sizes.items())} of "
                f"{total}): the best checkpoint is chosen on validation clips; use more clips per label "
                "(at least about 10)"
            )


def _load_splits(
    cfg, track_splits: dict, labels: list[str], out: Path, options: RunOptions, rank: int, err
) -> dict:
    from coaudio.train.data import load_clips

    cache = options.cache or out.parent / ".coaudio-cache"
    splits = {}
    with err.status("extracting features"):
        distributed.barrier(skip=rank == 0)  # rank 0 fills the feature cache; the others then read it
        for name, tracks in track_splits.items():
            splits[name], problems = load_clips(tracks, labels, cache, cfg.frontend, options.jobs, bar=False)
            for problem in problems:
                err.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
        distributed.barrier(skip=rank != 0)
    return splits


def _train_with_progress(
    cfg, splits: dict, labels: list[str], out: Path, options: RunOptions, err: Console
) -> None:
    from coaudio.config import ConfigError
    from coaudio.train.loop import train

    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    finished = {"epoch": 0}
    try:
        with progress:
            task = progress.add_task("batches", total=None, epoch=1)

            def on_batch(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            def on_epoch(report) -> None:
                finished["epoch"] = report.epoch
                progress.update(task, epoch=report.epoch + 1, completed=0)
                err.print(
                    f"epoch {report.epoch}: loss {report.loss:.4f}, train {report.train_accuracy:.3f}, "
                    f"valid {report.valid_accuracy:.3f}",
                    highlight=False,
                )

            train(
                cfg,
                splits,
                labels,
                out,
                resume=options.resume,
                on_epoch=on_epoch,
                on_batch=on_batch,
                data_root=options.data_root,
            )
    except ConfigError as exc:
        fail(exc)
    except KeyboardInterrupt:
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
    table = Table(title=f"{out}: best checkpoint (epoch {info['epoch']})")
    for column in ("split", "clips", "clip accuracy"):
        table.add_column(column, justify="right")
    for name in ("train", "valid", "test"):
        if splits.get(name):
            table.add_row(name, str(len(splits[name])), f"{accuracy(model, splits[name], cfg):.3f}")
    out_console().print(table)
