"""``coaudio train``: train a continual classifier on a labelled folder tree or on GTZAN."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

app = typer.Typer(help="Train a continual transformer classifier.", no_args_is_help=True)

# Options shared by both commands.
Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, metrics, config).")]
RecipeFile = Annotated[Optional[Path], typer.Option(
    "--recipe", exists=True, dir_okay=False,
    help="Recipe TOML (e.g. recipes/synth.toml, recipes/gtzan.toml); default: built-in defaults.")]
Overrides = Annotated[List[str], typer.Option(
    "--set", help="Override a recipe setting, e.g. --set train.epochs=10 (repeatable).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out after an interruption.")]
Cache = Annotated[Optional[Path], typer.Option(
    "--cache", help="Feature cache (default: <out>/../.coaudio-cache).")]
Jobs = Annotated[int, typer.Option("--jobs", min=1, help="Feature extraction processes.")]


@app.command("folder")
def folder_cli(
    root: Annotated[Path, typer.Argument(help="Folder of <label>/<audio files> (e.g. from coaudio data synth).")],
    out: Out, recipe: RecipeFile = None, set_: Overrides = [], resume: Resume = False,
    cache: Cache = None, jobs: Jobs = 2,
) -> None:
    """Train on any labelled folder tree; splits are seeded random 80/10/10."""
    from coaudio.data.gtzan import random_split
    from coaudio.data.tracks import DatasetError, list_labelled

    try:
        tracks = list_labelled(root)
    except DatasetError as exc:
        raise typer.BadParameter(str(exc))
    cfg = _recipe(recipe, set_)
    _run(cfg, random_split(tracks, seed=cfg.train.seed), out, resume, cache, jobs)


@app.command("gtzan")
def gtzan_cli(
    root: Annotated[Path, typer.Argument(help="GTZAN folder (either layout).")],
    out: Out, recipe: RecipeFile = None, set_: Overrides = [], resume: Resume = False,
    cache: Cache = None, jobs: Jobs = 2,
) -> None:
    """Train on GTZAN; data.split = filtered (fault-filtered 443/197/290) or random."""
    from coaudio.data.gtzan import GTZANError, filtered_split, list_tracks, random_split

    try:
        tracks = list_tracks(root)
    except GTZANError as exc:
        raise typer.BadParameter(str(exc))
    cfg = _recipe(recipe, set_)
    splits = filtered_split(tracks) if cfg.data.split == "filtered" else random_split(tracks, seed=cfg.train.seed)
    _run(cfg, splits, out, resume, cache, jobs)


def _recipe(path: Optional[Path], overrides: List[str]):
    from coaudio.config import ConfigError, from_dict, load, merge, parse_overrides, to_dict
    from coaudio.train.config import Recipe

    try:
        if path is None:
            return from_dict(Recipe, merge(to_dict(Recipe()), parse_overrides(overrides)))
        return load(Recipe, path, overrides)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc))


def _join_torchrun() -> int:
    """Join the process group when started by torchrun; returns this process's rank."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch
    import torch.distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank()


def _run(cfg, track_splits: dict, out: Path, resume: bool, cache: Optional[Path], jobs: int) -> None:
    from coaudio.config import ConfigError
    from coaudio.models.checkpoint import load_checkpoint
    from coaudio.train.data import load_clips
    from coaudio.train.loop import accuracy, train

    rank = _join_torchrun()
    err = Console(stderr=True, quiet=rank != 0)
    labels = sorted({t.label for tracks in track_splits.values() for t in tracks})
    cache = cache or out.parent / ".coaudio-cache"
    splits = {}
    with err.status("extracting features"):
        _barrier_unless(rank == 0)  # rank 0 fills the feature cache; the others then read it
        for name, tracks in track_splits.items():
            splits[name], problems = load_clips(tracks, labels, cache, cfg.data.token_hop_frames, jobs,
                                                     cfg.feature_config())
            for problem in problems:
                err.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
        _barrier_unless(rank != 0)
    err.print("clips: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()), highlight=False)
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        console=err, disable=not err.is_terminal)
    try:
        with progress:
            task = progress.add_task("batches", total=None, epoch=1)

            def on_batch(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            def on_epoch(report) -> None:
                progress.update(task, epoch=report.epoch + 1, completed=0)
                err.print(f"epoch {report.epoch}: loss {report.loss:.4f}, train {report.train_accuracy:.3f}, "
                          f"valid {report.valid_accuracy:.3f}", highlight=False)

            train(cfg, splits, labels, out, resume=resume, on_epoch=on_epoch, on_batch=on_batch)
    except ConfigError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(1)
    _leave_torchrun()  # not on errors: a failed rank must not wait at a barrier for the others
    if rank != 0:
        return
    model, _, info = load_checkpoint(out / "best.safetensors")
    table = Table(title=f"{out}: best checkpoint (epoch {info['epoch']})")
    for column in ("split", "clips", "clip accuracy"):
        table.add_column(column, justify="right")
    for name in ("train", "valid", "test"):
        if splits.get(name):
            table.add_row(name, str(len(splits[name])), f"{accuracy(model, splits[name], cfg):.3f}")
    Console().print(table)


def _leave_torchrun() -> None:
    """Leave the process group together: a rank that exits while gloo's threads still run
    aborts ("terminate called without an active exception", SIGABRT), failing the launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _barrier_unless(skip: bool) -> None:
    """Wait for every rank at this point (a no-op outside torchrun); ``skip`` lets one side
    pass so that rank 0 can run ahead of the others at a matching pair of calls."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and not skip:
        dist.barrier()
