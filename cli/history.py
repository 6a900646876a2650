"""``coaudio history [DB]``: the detection history that ``coaudio serve`` records.

A reader only: it never creates or changes the file, leaves no -wal/-shm files next to a file
that had none, and reads while a server writes (WAL).
Rows go to stdout as a table on a terminal and as JSON lines otherwise (or ``--format``);
JSON lines and CSV are written as they are read, so a history of millions of rows streams.
"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

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
    limit: Annotated[
        Optional[int],
        typer.Option("--limit", min=1, help="Only the newest N rows (with --streams: sessions, by start)."),
    ] = None,
    fmt: Annotated[
        Optional[Format],
        typer.Option("--format", help="Output format. Default: a table on a terminal, JSON lines otherwise."),
    ] = None,
    list_streams: Annotated[
        bool,
        typer.Option(
            "--streams",
            help="List the stream sessions (one per connection or run) instead: those that overlap "
            "--since/--until (an open one reaches to now), of --stream, the newest --limit.",
        ),
    ] = False,
) -> None:
    """Show the hop results that coaudio serve recorded, oldest first, or (--streams) its sessions.

    For example: coaudio history --since 1h --stream kitchen
    or: coaudio history --since 2026-11-28 --format csv > day.csv
    or: coaudio history --streams --since 1d --limit 20"""
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
            _print_streams(reader.streams(stream, start, end, limit), fmt)
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
        f"(coaudio serve CHECKPOINT --db {shlex.quote(str(path))})"
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


# The terminal tables fit the terminal (80 columns included): each column as wide as its widest
# cell up to a cap, long names cut with an ellipsis, and the flexible last column (a hop's top
# labels, a session's source) gets what is left, or is left out when too little is. JSON lines and
# CSV hold every field in full.
GAP = 3  # columns between two cells: padding, the (blank) rule, padding
FLEX_MIN = 10  # narrower than this, the flexible column is left out


def _rows_table(rows: list[dict]) -> None:
    if not rows:
        err_console().print("no hops match", highlight=False)
        return
    cells = [
        (
            _short(r["time"]),
            r["stream"],
            str(r["hop"]),
            f"{r['end_s']:.1f}",
            r["label"],
            f"{r['confidence']:.2f}",
            " ".join(f"{t['label']}:{t['p']:.2f}" for t in r["top"][1:]),  # the first is label, conf
        )
        for r in rows
    ]
    header = ("time", "stream", "hop", "at s", "label", "conf", "next")
    caps = (14, 12, 8, 9, 14, 4)
    _fitted_table(header, cells, caps, right=("hop", "at s", "conf"), spare=("at s", "hop", "stream"))


def _print_streams(sessions: list[dict], fmt: Format) -> None:
    from coaudio.serve.history_query import STREAM_COLUMNS

    if fmt is Format.jsonl:
        for s in sessions:
            sys.stdout.write(json.dumps(s) + "\n")
    elif fmt is Format.csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=[*STREAM_COLUMNS, "writer_gone"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _csv_value(v) for k, v in s.items()} for s in sessions)
    elif not sessions:
        err_console().print("no stream sessions", highlight=False)
    else:
        _streams_table(sessions)


def _csv_value(value):
    """None as an empty cell, booleans as JSON writes them (true, false)."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, bool) else value


def _streams_table(sessions: list[dict]) -> None:
    cells = [
        (
            str(s["id"]),
            s["name"],
            _short(s["started"]),
            _ended(s),
            str(s["hops"]),
            s["last_label"] or "",
            s["source"],
        )
        for s in sessions
    ]
    header = ("id", "name", "started", "ended", "hops", "last label", "source")  # kind: in JSON and CSV
    caps = (6, 12, 14, 20, 8, 12)
    _fitted_table(header, cells, caps, right=("id", "hops"), spare=("id", "last label", "hops", "started"))


def _ended(session: dict) -> str:
    """When it ended (the time alone on its start's day); open: live (or whether its server
    lives cannot be told here); gone: its server died and no server has opened the file since
    to close it; crash: its server died and a later one closed it."""
    if session["ended"] is None:
        return "gone" if session.get("writer_gone") else "open"
    same_day = _short(session["ended"])[:5] == _short(session["started"])[:5]
    when = _short(session["ended"])[6:] if same_day else _short(session["ended"])
    return f"{when} crash" if session.get("ended_by") == "crash" else when


def _fitted_table(
    header: tuple, cells: list[tuple], caps: tuple, right: tuple = (), spare: tuple = ()
) -> None:
    """A table of ``cells`` as wide as the console at most: the fixed columns as wide as their
    widest cell up to ``caps``, the last (flexible) column whatever is left. Where even the fixed
    columns do not fit (a narrow terminal), those of ``spare`` are left out in that order rather
    than every cell cut, and a caption says so."""
    console = out_console()
    shown = list(range(len(caps)))
    widths = {i: min(cap, _widest(header, cells, i)) for i, cap in enumerate(caps)}

    def fixed() -> int:  # the shown fixed columns with the gaps between them
        return sum(widths[i] for i in shown) + GAP * (len(shown) - 1)

    for name in spare:
        if fixed() <= console.width:
            break
        shown.remove(header.index(name))
    flex = console.width - fixed() - GAP
    if flex >= FLEX_MIN:
        widths[len(caps)] = min(flex, _widest(header, cells, len(caps)))
        shown.append(len(caps))
    left_out = [name for i, name in enumerate(header) if i not in shown]
    caption = None
    if set(left_out) & set(spare):  # (the flexible column alone goes silently, as at 80 columns)
        caption = f"left out at this width: {', '.join(left_out)} (--format csv or jsonl has every field)"
    header, cells = [header[i] for i in shown], [[row[i] for i in shown] for row in cells]
    widths = [widths[i] for i in shown]
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, caption=caption, caption_justify="left"
    )
    for name, width in zip(header, widths):
        justify = "right" if name in right else "left"
        table.add_column(name, width=width, no_wrap=True, overflow="ellipsis", justify=justify)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # Text: a name like "[red]" is no markup
    console.print(table, highlight=False)


def _widest(header: tuple, cells: list[tuple], column: int) -> int:
    return max(cell_len(header[column]), *(cell_len(row[column]) for row in cells))


def _short(t: float) -> str:
    """Local time to the second, without the year (JSON lines and CSV have the exact time)."""
    return datetime.fromtimestamp(t).strftime("%m-%d %H:%M:%S")
