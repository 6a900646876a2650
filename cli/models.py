"""``coaudio models``: the pretrained models coaudio can use, and the per-user store that
fetches, verifies and installs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail, interrupted

if TYPE_CHECKING:  # the library is imported inside the commands, keeping --help fast
    from coaudio.pretrained.registry import ModelSpec
    from coaudio.pretrained.store import ModelStatus

app = typer.Typer(
    help="Pretrained models: list them, fetch them into the per-user store (verified, resumable).",
    no_args_is_help=True,
)

DirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--dir",
        help="Models folder (default: $COAUDIO_MODELS, else ~/.cache/coaudio/models).",
        file_okay=False,
    ),
]


def _spec(name: str) -> ModelSpec:
    from coaudio.pretrained.registry import UnknownModel, get_model

    try:
        return get_model(name)
    except UnknownModel as exc:
        raise typer.BadParameter(str(exc), param_hint="'NAME'") from None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 100e6 else f"{n / 1e6:.0f} MB"


def _download_size(spec: ModelSpec) -> str:
    size = spec.download_size
    if size is None:
        return "?"
    exact = all(f.size is not None for f in spec.files)
    return _mb(size) if exact else f"~{_mb(size)}"


def _status_text(status: ModelStatus) -> str:
    if status.state == "present":
        return f"present ({_mb(status.size or 0)}): {status.folder}"
    if status.state == "damaged":
        return f"damaged ({status.problem}): fetch replaces it"
    return "absent"


def _record(spec: ModelSpec, status: ModelStatus) -> dict:
    return {
        "name": spec.name,
        "description": spec.description,
        "download_bytes": spec.download_size,
        "licence": spec.licence,
        "source": spec.source,
        "homepage": spec.homepage,
        "status": status.state,
        "path": str(status.folder),
        "installed_bytes": status.size,
        "problem": status.problem or None,
        "files": {role: str(path) for role, path in status.files.items()},
    }


@app.command("list")
def list_cli(
    dir: DirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model, one per line.")] = False,
) -> None:
    """The models coaudio knows: size, licence, where they come from, whether installed."""
    from coaudio.pretrained.registry import MODELS
    from coaudio.pretrained.store import model_status, models_dir

    root = models_dir(dir)
    try:
        rows = [(spec, model_status(spec, root)) for spec in MODELS.values()]
    except OSError as exc:  # e.g. a models folder we may not read
        fail(f"cannot read {exc.filename or root}: {exc.strerror or exc}")
    if as_json:
        for spec, status in rows:
            typer.echo(json.dumps(_record(spec, status)))
        return
    table = Table(title=f"models in {root}", title_justify="left")
    # Short cells and the status (with its path: copied, grepped) never break; the prose does.
    table.add_column("model", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    table.add_column("download", no_wrap=True)
    table.add_column("licence", no_wrap=True)
    table.add_column("source", overflow="fold", ratio=1)
    table.add_column("status", no_wrap=True)
    for spec, status in rows:
        table.add_row(
            spec.name,
            spec.description,
            _download_size(spec),
            spec.licence,
            spec.source,
            _status_text(status),
        )
    out_console().print(table, highlight=False, markup=False)


@app.command("fetch")
def fetch_cli(
    name: Annotated[str, typer.Argument(help="Model name (see 'coaudio models list').")],
    dir: DirOption = None,
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="Where to get the files instead: a mirror URL (of a folder holding them, or of "
            "the file itself for a one-file model) or a local folder holding them (offline).",
        ),
    ] = "",
    force: Annotated[
        bool, typer.Option("--force", help="Fetch and install again even if it is installed.")
    ] = False,
) -> None:
    """Download (or take from --from), verify, convert and install a model.

    An interrupted download resumes when the same command runs again.

    Nothing is installed until every file has been verified and converted."""
    from coaudio.pretrained.sources import FetchError
    from coaudio.pretrained.store import fetch_model, models_dir

    spec = _spec(name)
    err = err_console()
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.fields[mb]}"),
        console=err,
        disable=not err.is_terminal,
    )
    tasks: dict[str, int] = {}

    def on_bytes(file: str, done: int, total: int | None) -> None:
        if file not in tasks:
            tasks[file] = progress.add_task(file, total=total, mb="")
        progress.update(tasks[file], completed=done, total=total, mb=f"{done / 1e6:.1f} MB")

    try:
        with progress:
            installed = fetch_model(spec, dir, source or None, force=force, on_bytes=on_bytes)
    except FetchError as exc:
        fail(exc)
    except OSError as exc:  # the models folder: permissions, a full disk
        fail(f"cannot write {exc.filename or models_dir(dir)}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        from coaudio.pretrained.store import model_status

        kept = model_status(spec, dir).state == "present"  # --force over an install: it stays
        what = (
            f"{name} was not fetched again; the installed copy is kept"
            if kept
            else f"{name} was not installed"
        )
        interrupted(f"interrupted: {what}; run the same command again to resume")
    files = ", ".join(path.name for path in installed.files.values())
    if installed.fetched:
        message = f"installed: {name} in {installed.folder} ({files})"
    else:
        message = f"already installed: {name} in {installed.folder} (--force fetches it again)"
    out_console().print(message, highlight=False, markup=False, soft_wrap=True)


@app.command("path")
def path_cli(
    name: Annotated[str, typer.Argument(help="Model name (see 'coaudio models list').")],
    role: Annotated[
        str, typer.Option(help="Which file: weights, pca (vggish), licence, notice (musicnn).")
    ] = "weights",
    dir: DirOption = None,
) -> None:
    """Print the path of an installed model's file (for scripts)."""
    from coaudio.pretrained.store import ModelNotFetched, model_file

    spec = _spec(name)
    try:
        spec.output(role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--role'") from None
    try:
        typer.echo(model_file(spec, role, dir))
    except ModelNotFetched as exc:
        fail(exc)
