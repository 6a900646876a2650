"""``coaudio classify`` output: stable columns in table, CSV and JSON-lines form."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

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


def render(results: list[FileResult], fmt: str, timeline: bool) -> str:
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
    table = Table(show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    buffer = io.StringIO()
    Console(file=buffer, width=200, force_terminal=False).print(table)
    return buffer.getvalue()
