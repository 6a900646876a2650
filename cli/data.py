"""``coaudio data``: dataset utilities."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail, interrupted

if TYPE_CHECKING:  # the library is imported inside the commands, keeping --help fast
    from coaudio.data.synth import SynthResult

app = typer.Typer(help="Datasets: download GTZAN, make the built-in synthetic set.", no_args_is_help=True)


@app.command("download")
def download_cli(
    dataset: Annotated[str, typer.Argument(help="Dataset name: gtzan.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to unpack into.")],
    url: Annotated[
        str, typer.Option(help="Archive URL (GTZAN mirrors change; default: the original marsyas archive).")
    ] = "",
    sha256: Annotated[
        str,
        typer.Option(
            help="Expected SHA-256 of the archive (64 hex digits). Without --url the "
            "original archive's is used; with --url and no --sha256 the archive "
            "is not verified (a warning says so)."
        ),
    ] = "",
) -> None:
    """Download and unpack a dataset archive: resumable, checksum-verified, idempotent."""
    import re

    from coaudio.data.download import GTZAN_SHA256, GTZAN_URL, DownloadError, fetch

    if dataset != "gtzan":
        raise typer.BadParameter(f"unknown dataset {dataset!r}; known: gtzan", param_hint="'DATASET'")
    if sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise typer.BadParameter(f"a SHA-256 is 64 hex digits, got {sha256!r}", param_hint="'--sha256'")
    url = url or GTZAN_URL
    digest = sha256 or (GTZAN_SHA256 if url == GTZAN_URL else "")
    err = err_console()
    progress = Progress(
        TextColumn("download"),
        BarColumn(),
        TextColumn("{task.fields[mb]}"),
        console=err,
        disable=not err.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task("bytes", total=None, mb="")

            def on_bytes(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total, mb=f"{done / 1e6:.1f} MB")

            fetched = fetch(url, out, digest or None, on_bytes=on_bytes)
    except DownloadError as exc:
        fail(exc)
    except OSError as exc:  # the output folder: permissions, a full disk
        fail(f"cannot write {exc.filename or out}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        interrupted("interrupted: run the same command again to resume the download")
    if not digest:
        err.print(
            "warning: no --sha256 given with --url, so the archive was not verified",
            highlight=False,
            markup=False,
        )
    out_console().print(
        f"{'installed' if fetched else 'already installed'}: {dataset} in {out}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@app.command("synth")
def synth_cli(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write <genre>/<genre>.000NN.wav into.")],
    per_genre: Annotated[int, typer.Option(min=1, help="Clips per genre.")] = 40,
    seconds: Annotated[float, typer.Option(min=1.0, max=600.0, help="Clip length in seconds.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed always gives the same files.")] = 0,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a synthetic set made with other settings, "
            "or write into a folder that holds other files.",
        ),
    ] = False,
) -> None:
    """Write the synthetic genre dataset (5 genres; deterministic; seconds to make).

    An interrupted run (Ctrl-C, kill) is resumed by running the same command again; a folder
    that already holds the same set is left as it is."""
    from coaudio.data.synth import GENRES, SynthConfig, SynthError, write_dataset

    err = err_console()
    total = per_genre * len(GENRES)
    progress = Progress(
        TextColumn("synth"), BarColumn(), MofNCompleteColumn(), console=err, disable=not err.is_terminal
    )
    try:
        with progress:
            task = progress.add_task("clips", total=total)
            result = write_dataset(
                out,
                SynthConfig(per_genre, seconds, seed),
                on_clip=lambda _: progress.advance(task),
                force=force,
            )
    except SynthError as exc:
        fail(exc)
    except OSError as exc:  # permissions, a full disk
        fail(f"cannot write {exc.filename or out}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        interrupted(f"interrupted: {out} is unfinished; run the same command again to resume")
    _report_synth(result, out, f"{len(GENRES)} genres x {per_genre}, {seconds:g} s each", err)


def _report_synth(result: SynthResult, out: Path, shape: str, err: Console) -> None:
    """The outcome on stdout; what was resumed or left alone on stderr."""
    if result.already_complete:
        out_console().print(
            f"already complete: {len(result.paths)} clips ({shape}) in {out}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return
    if result.kept:
        err.print(
            f"resumed an unfinished run: kept the {_count(result.kept, 'clip')} already in {out}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if result.others:
        err.print(
            f"warning: left {_count(len(result.others), 'file')} in {out} that coaudio did not write "
            f"(e.g. {result.others[0].relative_to(out)})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    kept = f", kept {result.kept}" if result.kept else ""
    out_console().print(
        f"wrote {_count(result.written, 'clip')}{kept} ({shape}) to {out}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
