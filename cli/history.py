"""``coaudio history [DB]``: the detection history that ``coaudio serve`` records.

A reader only: it never creates or changes the file, and reads while a server writes (WAL).
Rows go to stdout as a table on a terminal and as JSON lines otherwise (or ``--format``);
JSON lines and CSV are written as they are read, so a history of millions of rows streams.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail


class Format(str, Enum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


TIME_HELP = "unix seconds, ISO 8601 (local time unless it ends in Z or +01:00) or an age (90s, 10m, 2h, 7d)"


def history_cli(
    db: Annotated[
        Optional[Path],
        typer.Argument(
            help="History file. Default: $COAUDIO_HISTORY, else ~/.local/share/coaudio/history.sqlite "
            "(under $XDG_DATA_HOME if set), where coaudio serve writes.",
            show_default=False,
        ),
    ] = None,
    stream: Annotated[Optional[str], typer.Option("--stream", help="Only this stream (its name).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help=f"From this time on: {TIME_HELP}.")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help=f"Before this time: {TIME_HELP}.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the newest N rows.")] = None,
    fmt: Annotated[
        Optional[Format],
        typer.Option("--format", help="Output format. Default: a table on a terminal, JSON lines otherwise."),
    ] = None,
    list_streams: Annotated[
        bool, typer.Option("--streams", help="List the stream sessions (one per connection or run) instead.")
    ] = False,
) -> None:
    """Show the hop results that coaudio serve recorded, oldest first, or (--streams) its sessions.

    For example: coaudio history --since 1h --stream kitchen
    or: coaudio history --since 2026-11-28 --format csv > day.csv"""
    from coaudio.serve.history import HistoryError, HistoryReader, default_db_path

    start, end = _time("--since", since), _time("--until", until)
    if start is not None and end is not None and start >= end:
        raise typer.BadParameter(f"{since!r} is not before --until {until!r}", param_hint="'--since'")
    path = db if db is not None else default_db_path()
    fmt = fmt or (Format.table if sys.stdout.isatty() else Format.jsonl)
    try:
        reader = HistoryReader(path)
    except FileNotFoundError:
        fail(_no_history(path, db is None))
    except HistoryError as exc:
        fail(exc)
    with reader:
        if list_streams:
            _print_streams(reader.streams(stream), fmt)
        else:
            _print_rows(reader.iter_query(stream, start, end, limit), fmt)


def _time(option: str, text: str | None) -> float | None:
    """Unix seconds of a --since/--until value; a usage error (exit 2) if it is not a time."""
    if text is None:
        return None
    from coaudio.serve.history import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


def _no_history(path: Path, default: bool) -> str:
    where = f"{path} (the default; $COAUDIO_HISTORY chooses another)" if default else str(path)
    return (
        f"no history yet: {where} does not exist; coaudio serve records one while it runs "
        f"(coaudio serve CHECKPOINT --db {path})"
    )


def _print_rows(rows, fmt: Format) -> None:
    if fmt is Format.jsonl:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
    elif fmt is Format.csv:
        from coaudio.serve.history_query import csv_header, csv_lines

        sys.stdout.write(csv_header())
        for line in csv_lines(rows):  # write(), not writelines(): main turns EPIPE from write() into exit 141
            sys.stdout.write(line)
    else:
        _rows_table(list(rows))


def _rows_table(rows: list[dict]) -> None:
    if not rows:
        err_console().print("no hops match", highlight=False)
        return
    table = Table(show_lines=False)
    for column in ("time", "stream", "session", "hop", "start_s", "end_s", "label", "confidence", "top"):
        table.add_column(column, overflow="fold", justify="right" if column in ("hop", "session") else "left")
    for r in rows:
        top = " ".join(f"{t['label']}:{t['p']:.2f}" for t in r["top"])
        table.add_row(
            _local(r["time"]),
            r["stream"],
            str(r["session"]),
            str(r["hop"]),
            f"{r['start_s']:.2f}",
            f"{r['end_s']:.2f}",
            r["label"],
            f"{r['confidence']:.3f}",
            top,
        )
    out_console().print(table)


def _print_streams(sessions: list[dict], fmt: Format) -> None:
    from coaudio.serve.history_query import STREAM_COLUMNS

    if fmt is Format.jsonl:
        for s in sessions:
            sys.stdout.write(json.dumps(s) + "\n")
    elif fmt is Format.csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=STREAM_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in s.items()} for s in sessions)
    elif not sessions:
        err_console().print("no stream sessions", highlight=False)
    else:
        _streams_table(sessions)


def _streams_table(sessions: list[dict]) -> None:
    table = Table(show_lines=False)
    columns = (
        "id",
        "name",
        "kind",
        "source",
        "rate",
        "ch",
        "model",
        "started",
        "ended",
        "hops",
        "last label",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for s in sessions:
        table.add_row(
            str(s["id"]),
            s["name"],
            s["kind"],
            s["source"],
            str(s["sample_rate"]),
            str(s["channels"]),
            s["model"],
            _local(s["started"]),
            "open" if s["ended"] is None else _local(s["ended"]),  # open: live, or its server died
            str(s["hops"]),
            s["last_label"] or "",
        )
    out_console().print(table)


def _local(t: float) -> str:
    """Local time to the millisecond, as a person reads it."""
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
