"""``coaudio history``: the detection history that ``coaudio serve`` stores (stub)."""

from __future__ import annotations

import typer


def history_cli() -> None:
    """Query the detection history of coaudio serve."""
    raise typer.Exit(1)
