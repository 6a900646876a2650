"""The ``coaudio`` command: one Typer app, one module per command."""

from __future__ import annotations

import logging

import typer

from coaudio_cli import bench, classify, data, evaluate, features, stream, train

app = typer.Typer(
    name="coaudio",
    help="Online audio classification with Continual Transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("bench")(bench.bench_cli)
app.command("features")(features.features_cli)
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.command("evaluate")(evaluate.evaluate_cli)
app.command("stream")(stream.stream_cli)
app.command("devices")(stream.devices_cli)
app.command("classify")(classify.classify_cli)


def _version(value: bool) -> None:
    if value:
        from coaudio import __version__

        typer.echo(f"coaudio {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log diagnostics to stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    app()
