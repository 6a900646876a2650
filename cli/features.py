"""``coaudio features``: log-mel frames or VGGish embeddings of many files into a cache."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import interrupted


class Kind(str, Enum):
    logmel = "logmel"
    vggish = "vggish"


def features_cli(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Audio files and/or folders (searched recursively), or dataset roots with --dataset."
        ),
    ],
    cache: Annotated[Path, typer.Option("--cache", "-c", help="Cache folder (created if needed).")],
    dataset: Annotated[
        Optional[str], typer.Option(help="Read PATHS as dataset roots: gtzan (either layout).")
    ] = None,
    kind: Annotated[
        Kind, typer.Option(help="logmel (frames, 64 bands) or vggish (128-d embeddings).")
    ] = Kind.logmel,
    vggish_weights: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, help="Local VGGish weights (.pth/.safetensors/.npz)."),
    ] = None,
    vggish_pca: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Local VGGish PCA parameters; embeddings are then postprocessed.",
        ),
    ] = None,
    patch_hop: Annotated[
        float, typer.Option(min=0.01, help="Seconds between VGGish patches (vggish only).")
    ] = 0.96,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going/--fail-fast", help="Carry on past files that fail (default), or stop at the first."
        ),
    ] = True,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON line per file on stdout.")] = False,
) -> None:
    """Extract features into an on-disk cache; re-running only does new or changed files."""
    from coaudio.features.cache import CacheError, FeatureConfig, check_cache, extract, find_audio

    err = err_console()
    try:
        config = FeatureConfig(
            kind=kind.value,
            hop_frames=max(1, round(patch_hop * 100)),
            weights=str(vggish_weights or ""),
            pca=str(vggish_pca or ""),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        check_cache(cache, "--cache", create=False)
    except CacheError as exc:
        raise typer.BadParameter(str(exc)) from None
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise typer.BadParameter(f"no such file or folder: {missing[0]}")
    if dataset is not None:
        files = _dataset_files(dataset, paths)
    else:
        files = find_audio(paths)
    if not files:
        err.print("no audio files found")
        raise typer.Exit(1)

    progress = Progress(
        TextColumn("features"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    with progress:
        task = progress.add_task("files", total=len(files), rate="")

        def done(outcome) -> None:
            if jsonl:
                sys.stdout.write(json.dumps(outcome.__dict__) + "\n")
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(
                task, advance=1, rate=f"{(progress.tasks[task].completed + 1) / elapsed:.1f} files/s"
            )

        try:
            summary = extract(files, cache, config, jobs=jobs, fail_fast=not keep_going, on_done=done)
        except KeyboardInterrupt:
            interrupted(
                f"interrupted: the files extracted so far are in {cache}; running the same command "
                "again extracts only the rest"
            )

    for outcome in summary.failed:
        err.print(f"[red]failed[/red] {outcome.path}: {outcome.error}", highlight=False)
    line = (
        f"{summary.count('extracted')} extracted, {summary.count('cached')} cached, "
        f"{len(summary.failed)} failed, {len(files) - len(summary.outcomes)} not attempted"
    )
    (err if jsonl else out_console()).print(line, highlight=False)
    if summary.failed:
        raise typer.Exit(1)


def _dataset_files(name: str, roots: list[Path]) -> list[Path]:
    if name != "gtzan":
        raise typer.BadParameter(f"unknown dataset {name!r}; known: gtzan")
    from coaudio.data.gtzan import GTZANError, list_tracks

    try:
        return [track.path for root in roots for track in list_tracks(root)]
    except GTZANError as exc:
        raise typer.BadParameter(str(exc)) from None
