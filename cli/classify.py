"""``coaudio classify CKPT PATH...``: a genre (and optionally a timeline) for every file."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from coaudio_cli.classify_output import render
from coaudio_cli.console import PIPE_WIDTH, err_console, out_console
from coaudio_cli.errors import fail, interrupted, resume_command


class Format(str, Enum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


EXTENSIONS = {".csv": Format.csv, ".jsonl": Format.jsonl, ".ndjson": Format.jsonl, ".txt": Format.table}


def output_format(fmt: Optional[Format], output: Optional[Path], terminal: bool) -> Format:
    """``--format`` when given; else from ``-o``'s extension; else table on a terminal, JSON
    lines otherwise."""
    if fmt is not None:
        return fmt
    if output is None:
        return Format.table if terminal else Format.jsonl
    if output.suffix.lower() in EXTENSIONS:
        return EXTENSIONS[output.suffix.lower()]
    raise typer.BadParameter(
        f"cannot tell the format from the extension of {output} (.csv, .jsonl, "
        ".ndjson or .txt); give --format",
        param_hint="'-o'",
    )


def classify_cli(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint (.safetensors) or run folder from coaudio train.")
    ],
    paths: Annotated[list[str], typer.Argument(help="Audio files and folders (searched recursively).")],
    glob: Annotated[
        Optional[str],
        typer.Option("--glob", help="Only paths (or names) matching this pattern, e.g. '*.mp3'."),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes per file, best first.")] = 3,
    timeline: Annotated[bool, typer.Option("--timeline", help="Also the top class of every hop.")] = False,
    fmt: Annotated[
        Optional[Format],
        typer.Option(
            "--format",
            help="Output format. Default: from -o's extension "
            "(.csv, .jsonl/.ndjson, .txt for a table); without -o, a table on a "
            "terminal and JSON lines otherwise.",
        ),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Write results here instead of stdout.")
    ] = None,
    jobs: Annotated[
        int, typer.Option(min=0, help="Worker processes (0: one per idle core, at least one).")
    ] = 0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Skip files an interrupted run with the same model and settings finished."
        ),
    ] = False,
    journal: Annotated[Path, typer.Option(help="Folder of the resume journal.")] = Path(".coaudio-journal"),
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first file that cannot be classified.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Classify every audio file under PATHS in one continual pass per file.

    A file's result is the mean of its per-hop class probabilities. Unreadable files are
    reported in the output and the summary; the exit status is 1 if any failed."""
    from coaudio.online.batch_run import BatchRun
    from coaudio.safeio import write_text_atomically
    from coaudio.threads import batch_threads

    err = err_console()
    if output is not None and output.is_dir():
        raise typer.BadParameter(f"{output} is a folder; give a file name", param_hint="'-o'")
    fmt = output_format(fmt, output, sys.stdout.isatty())
    if output is not None and not output.parent.is_dir():
        raise typer.BadParameter(f"the folder {output.parent} does not exist", param_hint="'-o'")
    try:
        # each worker steps on one thread, so "threads" here is the worker count
        run = BatchRun(checkpoint, paths, glob, top_k, timeline, jobs or batch_threads(), journal, resume)
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)
    if run.rank == 0 and run.skipped:
        err.print(f"resuming: {run.skipped} of {len(run.inputs)} files already done", highlight=False)
    try:
        run.process(progress=None if quiet else _progress(err), fail_fast=fail_fast, bar=False)
    except KeyboardInterrupt:
        interrupted(
            f"\ninterrupted: finished files are in the journal ({journal}); continue with:\n"
            f"  {resume_command()}"
        )
    except OSError as exc:  # the journal cannot be written (disk full, permissions)
        fail(OSError(f"cannot write the journal in {journal}: {exc}"))
    results = run.finish()
    if results is None:  # a torchrun rank other than 0: rank 0 writes everything
        return
    # a table on stdout fits the terminal (a pipe: PIPE_WIDTH); in a file it is PIPE_WIDTH wide
    text = render(results, fmt.value, timeline, out_console().width if output is None else PIPE_WIDTH)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            write_text_atomically(output, text)
        except OSError as exc:
            fail(
                f"cannot write {output}: {exc.strerror or exc}; the results are in the journal ({journal}), "
                "so --resume with another -o finishes without redoing them"
            )
    run.forget()
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        err.print(f"[red]failed[/red] {escape(f'{r.path}: {r.error}')}", highlight=False, markup=True)
    audio_h = sum(r.duration_s for r in results) / 3600
    err.print(
        f"{len(results) - len(failed)} of {len(results)} files classified ({audio_h:.2f} h of audio), "
        f"{len(failed)} failed" + (f"; wrote {output}" if output else ""),
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)


def _progress(err: Console):
    """A callback(done, total, audio_s, elapsed_s) drawing a bar with files/s and audio h/s."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("classifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    state: dict = {}

    def update(done: int, total: int, audio_s: float, elapsed_s: float) -> None:
        if "task" not in state:
            bar.start()
            state["task"] = bar.add_task("files", total=total, rate="")
        speed = elapsed_s and done / elapsed_s
        hours = elapsed_s and audio_s / 3600 / elapsed_s
        bar.update(
            state["task"],
            completed=done,
            rate=f"{speed:.1f} files/s, {hours * 3600:.0f}x real time ({hours:.3f} audio h/s)",
        )
        if done >= total:
            bar.stop()

    return update
