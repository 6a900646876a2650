"""``coaudio classify`` output: stable columns in CSV and JSON-lines form, and a table for people
that fits the terminal (see :func:`table`)."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from coaudio_cli.console import PIPE_WIDTH

if TYPE_CHECKING:  # importing it loads torch; the CLI must start without it
    from coaudio.online.classify import FileResult

FORMATS = ("table", "csv", "jsonl")
FILE_COLUMNS = ["path", "status", "duration_s", "hops", "label", "confidence", "top", "error"]
TIMELINE_COLUMNS = ["path", "hop", "start_s", "end_s", "label", "confidence", "error"]


def file_row(r: FileResult) -> dict:
    label, confidence = r.top[0] if r.top else ("", None)
    return {
        "path": r.path,
        "status": r.status,
        "duration_s": round(r.duration_s, 3),
        "hops": r.hops,
        "label": label,
        "confidence": None if confidence is None else round(confidence, 6),
        "top": ";".join(f"{name}:{p:.6f}" for name, p in r.top),
        "error": r.error,
    }


def timeline_rows(r: FileResult) -> list[dict]:
    if r.status != "ok":
        return [
            {
                "path": r.path,
                "hop": "",
                "start_s": "",
                "end_s": "",
                "label": "",
                "confidence": "",
                "error": r.error,
            }
        ]
    return [
        {
            "path": r.path,
            "hop": k,
            "start_s": round(start, 4),
            "end_s": round(end, 4),
            "label": label,
            "confidence": round(p, 6),
            "error": "",
        }
        for k, (start, end, label, p) in enumerate(r.timeline or [])
    ]


def json_record(r: FileResult, timeline: bool) -> dict:
    label, confidence = r.top[0] if r.top else (None, None)
    record = {
        "path": r.path,
        "status": r.status,
        "duration_s": round(r.duration_s, 3),
        "sample_rate": r.sample_rate,
        "channels": r.channels,
        "hops": r.hops,
        "label": label,
        "confidence": None if confidence is None else round(confidence, 6),
        "top": [{"label": name, "p": round(p, 6)} for name, p in r.top],
        "error": r.error,
    }
    if timeline:
        record["timeline"] = [
            {"start_s": round(s, 4), "end_s": round(e, 4), "label": name, "p": round(p, 6)}
            for s, e, name, p in (r.timeline or [])
        ]
    return record


def render(results: list[FileResult], fmt: str, timeline: bool, width: int = PIPE_WIDTH) -> str:
    """The results as ``fmt``; a table is at most ``width`` columns wide (see :func:`table`)."""
    if fmt == "jsonl":
        return "".join(json.dumps(json_record(r, timeline)) + "\n" for r in results)
    columns = TIMELINE_COLUMNS if timeline else FILE_COLUMNS
    rows = [row for r in results for row in (timeline_rows(r) if timeline else [file_row(r)])]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        return buffer.getvalue()
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, markup=False).print(table(columns, rows, width))
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())  # no padding at the end


# A table for people, ``width`` columns at most: numbers and the status whole on one line; the
# path, label, top classes and error folded into the room left (a path is never cut: it is
# copied). Where even their minimum widths do not fit, the error (stderr names every failure)
# and then the top classes (label and confidence are its first) are left out, and a caption
# says so; narrower still (a console of 40 columns), cells are one space apart and the headers
# of the numbers are cut instead of the numbers. CSV and JSON lines always have every column.
WHOLE = {"status", "duration_s", "hops", "hop", "start_s", "end_s", "confidence"}
RIGHT = WHOLE - {"status"}
LEFT_OUT_FIRST = ("error", "top")
MIN_WIDTH = {"path": 20, "label": 10, "error": 16}  # top: its widest class
GAP = 3  # between two cells: padding, the (blank) rule, padding


def table(columns: list[str], rows: list[dict], width: int) -> Table:
    cells = {c: [_cell(row[c], c) for row in rows] for c in columns}
    natural = {c: _widest_line([c, *cells[c]]) for c in columns}
    least = {c: min(natural[c], MIN_WIDTH.get(c, 0) or _widest_word([c, *cells[c]])) for c in columns}
    shown = list(columns)
    while True:
        room = width - sum(natural[c] for c in shown if c in WHOLE) - GAP * (len(shown) - 1)
        flexible = [c for c in shown if c not in WHOLE]
        droppable = [c for c in LEFT_OUT_FIRST if c in shown]
        if sum(least[c] for c in flexible) <= room or not droppable:
            break
        shown.remove(droppable[0])
    tight = sum(least[c] for c in flexible) > room
    if tight:  # the numbers as wide as their values, one space apart; the rest shares what is left
        natural |= {c: _widest_line(cells[c] or [c]) for c in shown if c in WHOLE}
        room = width - sum(natural[c] for c in shown if c in WHOLE) - (len(shown) - 1)
        total = sum(least[c] for c in flexible)
        widths = {c: min(natural[c], max(1, least[c] * room // total)) for c in flexible}
    else:
        widths = _share(room, {c: natural[c] for c in flexible}, {c: least[c] for c in flexible})
    left_out = [c for c in columns if c not in shown]
    caption = (
        f"left out at this width: {', '.join(left_out)} (--format csv or jsonl has every column)"
        if left_out
        else None
    )
    grid = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0) if tight else (0, 1),
        caption=caption,
        caption_justify="left",
    )
    for c in shown:
        if c in WHOLE:
            justify = "right" if c in RIGHT else "left"
            grid.add_column(c, width=natural[c], no_wrap=True, overflow="ellipsis", justify=justify)
        else:
            grid.add_column(c, width=widths[c], overflow="fold")
    for k in range(len(rows)):
        grid.add_row(*(Text(cells[c][k]) for c in shown))  # Text: a name like "[red]" is no markup
    return grid


def _cell(value, column: str) -> str:
    if value is None:
        return ""
    if column == "top":  # one class a line when folded, never one cut in two
        return " ".join(str(value).split(";")) if value else ""
    return str(value)


def _widest_line(texts: list[str]) -> int:
    return max(cell_len(line) for text in texts for line in text.split("\n"))


def _widest_word(texts: list[str]) -> int:
    return max((cell_len(word) for text in texts for word in text.split()), default=1)


def _share(room: int, natural: dict[str, int], least: dict[str, int]) -> dict[str, int]:
    """Widths from ``least`` up to ``natural``, the room above the least given in column order
    (the path first: whole on one line where it fits)."""
    widths, spare = dict(least), room - sum(least.values())
    for c in widths:
        more = max(0, min(natural[c] - widths[c], spare))
        widths[c] += more
        spare -= more
    return widths
