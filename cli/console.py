"""The two consoles every command prints through.

stderr (progress, warnings, summaries) never breaks a line itself: in a terminal the terminal
wraps, and in a log or a pipe a message stays one line that grep finds. stdout tables get a
wide page when stdout is not a terminal, so titles and cells are not folded at 80 columns.
"""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 200  # columns for tables written to a file or pipe


def err_console(quiet: bool = False) -> Console:
    return Console(stderr=True, soft_wrap=True, quiet=quiet)


def out_console() -> Console:
    if sys.stdout.isatty():
        return Console()
    return Console(width=PIPE_WIDTH)
