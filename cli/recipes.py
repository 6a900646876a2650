"""``coaudio recipes``: list the shipped training recipes, or print one to copy and edit."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from coaudio_cli.console import out_console
from coaudio_cli.errors import fail

app = typer.Typer(
    help="List the shipped training recipes (for coaudio train ... --recipe NAME), "
    "or print one with: coaudio recipes show NAME."
)


@app.callback(invoke_without_command=True)
def recipes_cli(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of a table.")] = False,
) -> None:
    """List the shipped recipes: name, description and the file each is read from."""
    from coaudio.recipes import shipped

    if ctx.invoked_subcommand is not None:
        if json_out:  # refuse rather than silently ignore it
            fail("--json applies to the listing (coaudio recipes --json), not to subcommands")
        return
    found = shipped()
    if json_out:
        sys.stdout.write(json.dumps([asdict(r) for r in found], indent=1) + "\n")
        return
    table = Table(title="shipped recipes (coaudio train ... --recipe NAME)")
    table.add_column("name")
    table.add_column("description")
    table.add_column("file", overflow="fold")  # a path must stay whole to be copied
    for r in found:
        table.add_row(r.name, r.description, r.location)
    out_console().print(table)


@app.command("show")
def show_cli(
    name: Annotated[str, typer.Argument(help="A shipped recipe's name, e.g. synth or gtzan.")],
) -> None:
    """Print a shipped recipe's TOML to stdout, e.g. to save, edit and pass as --recipe FILE."""
    from coaudio.recipes import RecipeNotFound, text

    try:
        sys.stdout.write(text(name))
    except RecipeNotFound as exc:
        fail(exc)
