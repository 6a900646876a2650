"""``coaudio data``: dataset utilities."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

app = typer.Typer(help="Datasets: make the built-in synthetic set.", no_args_is_help=True)


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
