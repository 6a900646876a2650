"""How commands report a fatal error: one line on stderr, exit status 1."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape


def fail(exc: Exception | str) -> NoReturn:
    """Print ``error: <message>`` (unwrapped, markup-safe) to stderr and exit with status 1."""
    Console(stderr=True).print(f"[red]error[/red]: {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
