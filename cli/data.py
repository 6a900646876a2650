"""``coaudio data``: dataset utilities."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

app = typer.Typer(help="Datasets: download GTZAN, make the built-in synthetic set.", no_args_is_help=True)


@app.command("download")
def download_cli(
    dataset: str = typer.Argument(..., help="Dataset name: gtzan."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to unpack into."),
    url: str = typer.Option("", help="Archive URL (GTZAN mirrors change; default: the original marsyas archive)."),
    sha256: str = typer.Option("", help="Expected SHA-256 of the archive (default: the original archive's)."),
) -> None:
    """Download and unpack a dataset archive: resumable, checksum-verified, idempotent."""
    from coaudio.data.download import GTZAN_SHA256, GTZAN_URL, DownloadError, fetch

    if dataset != "gtzan":
        raise typer.BadParameter(f"unknown dataset {dataset!r}; known: gtzan")
    url = url or GTZAN_URL
    digest = sha256 or (GTZAN_SHA256 if url == GTZAN_URL else "")
    err = Console(stderr=True)
    progress = Progress(TextColumn("download"), BarColumn(), TextColumn("{task.fields[mb]}"),
                        console=err, disable=not err.is_terminal)
    try:
        with progress:
            task = progress.add_task("bytes", total=None, mb="")

            def on_bytes(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total, mb=f"{done / 1e6:.1f} MB")

            fetched = fetch(url, out, digest or None, on_bytes=on_bytes)
    except DownloadError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(1)
    if not digest:
        err.print("warning: no --sha256 given, the archive was not verified")
    Console().print(f"{'installed' if fetched else 'already installed'}: {dataset} in {out}", highlight=False)


@app.command("synth")
def synth_cli(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write <genre>/<genre>.000NN.wav into."),
    per_genre: int = typer.Option(40, min=1, help="Clips per genre."),
    seconds: float = typer.Option(10.0, min=1.0, max=600.0, help="Clip length in seconds."),
    seed: int = typer.Option(0, help="Random seed; the same seed always gives the same files."),
) -> None:
    """Write the synthetic genre dataset (5 genres; deterministic; seconds to make)."""
    from coaudio.data.synth import GENRES, SynthConfig, write_dataset

    err = Console(stderr=True)
    total = per_genre * len(GENRES)
    progress = Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), console=err,
                        disable=not err.is_terminal)
    with progress:
        task = progress.add_task("clips", total=total)
        write_dataset(out, SynthConfig(per_genre, seconds, seed), on_clip=lambda _: progress.advance(task))
    Console().print(f"wrote {total} clips ({len(GENRES)} genres x {per_genre}, {seconds:g} s each) to {out}")
