"""The two consoles every command prints through.

stderr (progress, warnings, summaries) never breaks a line itself: in a terminal the terminal
wraps, and in a log or a pipe a message stays one line that grep finds. stdout tables get a
wide page when stdout is not a terminal, so titles and cells are not folded at 80 columns.

Neither console reads markup: what is printed is printed as it is, so a path, a label or an
error message with square brackets in it (``x [bold]y.wav``, ``o[/]x.csv``) comes out whole
instead of styled, cut or crashing the command. Styling is asked for per call, with
``markup=True`` and every piece of outside text passed through :func:`rich.markup.escape`.

A width from the environment (rich reads COLUMNS) below :data:`MIN_WIDTH` is taken as
:data:`MIN_WIDTH`: ``COLUMNS=0`` would otherwise print every table and message as nothing.
"""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 200  # columns for tables written to a file or pipe
MIN_WIDTH = 40  # the narrowest console, whatever COLUMNS says


def err_console(quiet: bool = False) -> Console:
    return _at_least(Console(stderr=True, soft_wrap=True, quiet=quiet, markup=False))


def out_console(pipe_width: int = PIPE_WIDTH) -> Console:
    """stdout: as wide as the terminal, or ``pipe_width`` columns into a file or pipe (whatever
    COLUMNS says: shells and test runners export it where no terminal is)."""
    if sys.stdout.isatty():
        return _at_least(Console(markup=False))
    return Console(width=pipe_width, markup=False)


def _at_least(console: Console) -> Console:
    if console.width < MIN_WIDTH:
        console.width = MIN_WIDTH
    return console
