"""``coaudio serve``: many live streams through one model (WebSocket clients, URLs, input
devices), a live page, a detection history."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from coaudio_cli.console import err_console
from coaudio_cli.errors import fail, interrupted

MIN_KEEP_MB = 0.1  # a smaller file cannot hold even the schema and one batch


def serve_cli(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file or run folder (coaudio train).")],
    host: Annotated[
        str, typer.Option(help="Address to listen on. Anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free port).")] = 8750,
    token: Annotated[
        Optional[str],
        typer.Option(
            envvar="COAUDIO_TOKEN",
            help="Bearer token every request and WebSocket must carry (better: set COAUDIO_TOKEN).",
            show_envvar=True,
        ),
    ] = None,
    sources: Annotated[
        Optional[list[str]],
        typer.Option(
            "--source",
            help="Pull a stream: NAME=URL (http, https, rtsp; via ffmpeg) or NAME=mic:DEVICE. Repeatable.",
        ),
    ] = None,
    db: Annotated[
        Optional[Path],
        typer.Option(
            help="History database (SQLite), created if missing. Default: $COAUDIO_HISTORY if set, "
            "else $XDG_DATA_HOME/coaudio/history.sqlite if XDG_DATA_HOME is set, else "
            "~/.local/share/coaudio/history.sqlite. Read it with coaudio history.",
            show_default=False,
        ),
    ] = None,
    no_db: Annotated[bool, typer.Option("--no-db", help="Keep no history.")] = False,
    keep_days: Annotated[
        Optional[float],
        typer.Option(
            help="History: delete hops older than this many days (more than 0; 0.5 is 12 hours), at "
            "start and every minute. Default: keep them all.",
            show_default=False,
        ),
    ] = None,
    keep_mb: Annotated[
        Optional[float],
        typer.Option(
            help=f"History: once the file and its WAL take more than this many MiB, delete the oldest "
            f"hops down to 80% of it (at least {MIN_KEEP_MB}). Default: no limit.",
            show_default=False,
        ),
    ] = None,
    allow_hosts: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allow-host",
            help="A host name requests may carry besides loopback's (e.g. a proxy's), when listening on "
            "loopback. Repeatable.",
        ),
    ] = None,
    allow_origins: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allow-origin",
            help="A web page origin (https://host[:port]) that may open WebSockets besides the "
            "server's own and this machine's pages. Repeatable.",
        ),
    ] = None,
    max_streams: Annotated[int, typer.Option(min=1, help="Live streams in all.")] = 256,
    max_per_client: Annotated[int, typer.Option(min=1, help="Live streams from one client address.")] = 16,
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads of the model's worker.")] = 1,
    engine: Annotated[
        str,
        typer.Option(
            hidden=True,  # for coaudio bench serve: the same server with a regular model
            help="continual (the default); regular: recompute the model on the window of the last n "
            "patches per hop; regular-cached: the encoder on the last n embedded tokens. Same weights "
            "and results, more work per hop: for coaudio bench serve only.",
        ),
    ] = "continual",
) -> None:
    """Serve a model to many live streams: WebSocket /ws, a live page at /, an HTTP API.

    Open the printed address in a browser for the live page. Ctrl-C stops the server; every
    stream gets its last hops first."""
    import torch

    from coaudio.online.model import load_online
    from coaudio.serve.protocol import Limits
    from coaudio.serve.server import ServeError, ServeOptions, Terminated, serve

    if engine not in ("continual", "regular", "regular-cached"):
        raise typer.BadParameter(
            f"give continual, regular or regular-cached, not {engine!r}", param_hint="'--engine'"
        )
    if db is not None and no_db:
        raise typer.BadParameter("give --db or --no-db, not both")
    _check_retention(keep_days, keep_mb, no_db)
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address as URLs write it
        host = host[1:-1]
    _check_address(host, token, allow_origins or [])
    pulled = _sources(sources or [])
    torch.set_num_threads(threads)  # the worker's batches; the event loop keeps the other core
    try:
        online = load_online(checkpoint.expanduser().absolute())  # /health says where it is
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)
    history = None if no_db else _history(db, keep_days, keep_mb)
    limits = Limits(max_streams=max_streams, max_streams_per_client=max_per_client)
    options = ServeOptions(
        host,
        port,
        token,
        limits,
        pulled,
        engine=engine,
        allowed_hosts=tuple(allow_hosts or ()),
        allowed_origins=tuple(allow_origins or ()),
    )
    err = err_console()

    def ready(url: str) -> None:
        where = "no history" if history is None else f"history in {history.path}"
        model = f"{_plural(len(online.labels), 'label')}, {online.frontend.kind} front end"
        banner = f"coaudio serve: {url}  ({model}; {where})"
        page = url
        if host in ("0.0.0.0", "::"):  # not an address a browser can open
            page = url.replace(f"//{host}:", "//THIS-MACHINE:").replace(f"//[{host}]:", "//THIS-MACHINE:")
            banner += f"\n  listening on every address: open {page} (this machine's name or address)"
        if token:  # the secret itself stays out of terminals and logs
            banner += f"\n  open {page}?token=YOUR_TOKEN in a browser (the token that was set)"
        err.print(banner, highlight=False, markup=False)  # one write: a Ctrl-C cannot cut it in two

    try:
        serve(online, options, history, on_ready=ready)
    except ServeError as exc:
        fail(exc)
    except Terminated:
        err.print("coaudio serve: stopped (SIGTERM); every stream got its last hops", highlight=False)
    except KeyboardInterrupt:
        interrupted("coaudio serve: stopped; every stream got its last hops")


def _check_address(host: str, token: str | None, origins: list[str]) -> None:
    """Usage errors for the address, the token and the origins, each naming its option."""
    from coaudio.serve.server import ServeError, check_exposure, check_host, check_token

    for check, hint in ((lambda: check_host(host), "--host"), (lambda: check_token(token), "--token")):
        try:
            check()
        except ServeError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"'{hint}'") from None
    try:
        check_exposure(host, token)
    except ServeError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--host'") from None
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest.rstrip("/"):
            raise typer.BadParameter(
                f"give an origin as http(s)://host[:port], not {origin!r}", param_hint="'--allow-origin'"
            )


def _check_retention(keep_days: float | None, keep_mb: float | None, no_db: bool) -> None:
    """A usage error for limits that make no sense: not a number, infinite, or deleting every
    hop at once (a typo must not cost a history)."""
    given = [
        name for name, value in (("--keep-days", keep_days), ("--keep-mb", keep_mb)) if value is not None
    ]
    if given and no_db:
        raise typer.BadParameter(
            f"{' and '.join(given)} {'limits' if len(given) == 1 else 'limit'} the history, and --no-db "
            "keeps none: give one or the other"
        )
    if keep_days is not None and not (math.isfinite(keep_days) and keep_days > 0):
        raise typer.BadParameter(
            f"must be a number of days more than 0, got {keep_days} "
            "(leave --keep-days out to keep every hop)",
            param_hint="'--keep-days'",
        )
    if keep_mb is not None and not (math.isfinite(keep_mb) and keep_mb >= MIN_KEEP_MB):
        raise typer.BadParameter(
            f"must be a number of MiB of at least {MIN_KEEP_MB}, got {keep_mb} "
            "(leave --keep-mb out for no limit)",
            param_hint="'--keep-mb'",
        )


def _history(db: Path | None, keep_days: float | None, keep_mb: float | None):
    from coaudio.serve.history import History, HistoryError, default_db_path

    # absolute: the banner and the logs say where it is, whatever folder the server runs in
    path = Path(os.path.abspath((db or default_db_path()).expanduser()))
    if not path.parent.exists():  # a typo in --db should not go unnoticed
        err_console().print(f"coaudio serve: creating {path.parent} for the history", highlight=False)
    try:
        return History(path, max_age_s=None if keep_days is None else keep_days * 86_400, max_mb=keep_mb)
    except HistoryError as exc:
        fail(exc)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _sources(specs: list[str]) -> list:
    if not specs:
        return []
    from coaudio.serve.sources import SourceError, parse_source

    pulled = []
    for spec in specs:
        try:
            pulled.append(parse_source(spec))
        except SourceError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--source'") from None
    names = [s.name for s in pulled]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise typer.BadParameter(f"two sources are named {twice[0]!r}", param_hint="'--source'")
    return pulled
