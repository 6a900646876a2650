"""``coaudio serve``: many live streams through one model over WebSocket, URLs and devices (stub)."""

from __future__ import annotations

import typer


def serve_cli() -> None:
    """Serve a model to many live streams."""
    raise typer.Exit(1)
