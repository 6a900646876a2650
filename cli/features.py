"""``coaudio features``: log-mel frames, or VGGish or musicnn tokens, of many files into a cache."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail, interrupted

DEFAULT_HOP_S = {"vggish": 0.96, "musicnn": 0.992}  # musicnn: 62 of its 16 ms frames (gtzan-musicnn)


class Kind(str, Enum):
    logmel = "logmel"
    vggish = "vggish"
    musicnn = "musicnn"


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
        Kind,
        typer.Option(help="logmel (frames, 64 bands), vggish (128-d embeddings) or musicnn (its tokens)."),
    ] = Kind.logmel,
    weights: Annotated[
        Optional[str],
        typer.Option(
            help="vggish/musicnn weights: a model name (see coaudio models list; default: the kind's "
            "own) or a local file."
        ),
    ] = None,
    pca: Annotated[
        Optional[str],
        typer.Option(
            help="vggish: PCA parameters (model name vggish, or a file); embeddings are postprocessed."
        ),
    ] = None,
    layer: Annotated[
        Optional[str],
        typer.Option(
            help="musicnn: the token layer: max_pool (the default), penultimate, mean_pool, pooled, tags."
        ),
    ] = None,
    vggish_weights: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, hidden=True, help="Older spelling of --weights FILE."),
    ] = None,
    vggish_pca: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, hidden=True, help="Older spelling of --pca FILE."),
    ] = None,
    patch_hop: Annotated[
        Optional[float],
        typer.Option(
            min=0.01,
            help="Seconds between patches (vggish and musicnn; default: 0.96 for vggish, 0.99 for "
            "musicnn, as their recipes).",
        ),
    ] = None,
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
    from coaudio.features.cache import CacheError, check_cache, extract, find_audio

    err = err_console()
    config = _feature_config(kind, weights or vggish_weights, pca or vggish_pca, layer, patch_hop)
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
        except ValueError as exc:  # weights that are not the network's (checked before any file)
            progress.stop()
            fail(exc)

    for outcome in summary.failed:
        err.print(
            f"[red]failed[/red] {escape(f'{outcome.path}: {outcome.error}')}", highlight=False, markup=True
        )
    line = (
        f"{summary.count('extracted')} extracted, {summary.count('cached')} cached, "
        f"{len(summary.failed)} failed, {len(files) - len(summary.outcomes)} not attempted"
    )
    (err if jsonl else out_console()).print(line, highlight=False)
    if summary.failed:
        raise typer.Exit(1)


def _feature_config(kind: Kind, weights, pca, layer: Optional[str], patch_hop: Optional[float]):
    """The cache's feature configuration: the front end of ``kind`` with its weights resolved
    (a model name becomes the model store's file; one not fetched says what to run)."""
    from coaudio.config import ConfigError
    from coaudio.features.cache import FeatureConfig
    from coaudio.features.frontend import GRIDS, FrontendConfig
    from coaudio.pretrained.frontends import resolve_frontend

    if kind == Kind.logmel:
        if weights or pca or layer:
            raise typer.BadParameter("--weights, --pca and --layer are for --kind vggish or musicnn")
        return FeatureConfig()
    frame_s = GRIDS[kind.value].hop_samples / 16_000
    try:
        frontend = FrontendConfig(
            kind=kind.value,
            hop_frames=max(1, round((patch_hop or DEFAULT_HOP_S[kind.value]) / frame_s)),
            weights=str(weights or ""),
            pca=str(pca or ""),
            layer=layer or "",
        )
        return resolve_frontend(frontend).cache_config()
    except (ConfigError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    except FileNotFoundError as exc:  # a model not fetched, or a missing file
        fail(exc)


def _dataset_files(name: str, roots: list[Path]) -> list[Path]:
    if name != "gtzan":
        raise typer.BadParameter(f"unknown dataset {name!r}; known: gtzan")
    from coaudio.data.gtzan import GTZANError, list_tracks

    try:
        return [track.path for root in roots for track in list_tracks(root)]
    except GTZANError as exc:
        raise typer.BadParameter(str(exc)) from None
