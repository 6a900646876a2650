"""How commands end early: one line on stderr, and the exit status that says why."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.markup import escape

from coaudio_cli.console import err_console

INTERRUPTED = 130  # 128 + SIGINT
_REPORTED = {"interrupt": False}


def fail(exc: Exception | str) -> NoReturn:
    """Print ``error: <message>`` (unwrapped, markup-safe) to stderr and exit with status 1."""
    err_console().print(f"[red]error[/red]: {escape(str(exc))}", highlight=False, markup=True)
    raise typer.Exit(1)


def interrupted(message: str = "") -> NoReturn:
    """After Ctrl-C: say what was kept and how to go on (``message``), exit with 130."""
    if message:
        err_console().print(message, highlight=False, markup=False)
    _REPORTED["interrupt"] = True
    raise typer.Exit(INTERRUPTED)


def forget_python_interrupt_mark() -> None:
    """Call just before exiting with a status of our own choosing (130 after a Ctrl-C).

    CPython marks the process as killed by Ctrl-C whenever a KeyboardInterrupt leaves code that
    exec()/eval() ran from a string, even if an outer frame then handles it; dataclasses,
    namedtuple and typing generate code that way, so a Ctrl-C that lands while a module is
    imported often does. A ``python -m coaudio`` process so marked kills itself with SIGINT
    once the interpreter has finished: "interrupted", then a death by signal instead of 130.
    CPython clears the mark before it runs any string, so running an empty one clears it."""
    exec("")


def interruption_reported() -> bool:
    """Whether the command said itself what an interruption left (else the entry point does)."""
    return _REPORTED["interrupt"]


def resume_command(drop: tuple[str, ...] = ()) -> str:
    """The command line this process was started with, plus ``--resume`` and less ``drop``,
    quoted for a shell: what to run to continue after an interruption."""
    import os
    import shlex
    import sys
    from pathlib import Path

    args = [a for a in sys.argv[1:] if a not in drop]
    if "--resume" not in args:
        args.append("--resume")
    program = os.path.basename(sys.argv[0])
    prefix = ["coaudio"] if program == "coaudio" else [Path(sys.executable).name, "-m", "coaudio"]
    return shlex.join(prefix + args)
