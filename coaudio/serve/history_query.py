"""The detection history's database: opening it, and every read (the schema and its versions
are in :mod:`coaudio.serve.history_file`).

One file, two tables: ``sessions`` (one row per stream session: a WebSocket connection, one run of
a URL or microphone source) and ``hops`` (one row per hop that produced a label). ``hops`` keeps
the per-session counters in ``sessions`` (``hops`` and the ``last_*`` of its newest hop) up to date in
the same transactions, so listing the streams never counts millions of rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from coaudio.serve.history_file import HistoryError, check_schema, connect, session_columns
from coaudio.serve.history_recovery import writer_gone

ROW_COLUMNS = ["stream", "session", "time", "hop", "start_s", "end_s", "label", "confidence", "top"]
STREAM_COLUMNS = [
    "id",
    "name",
    "kind",
    "source",
    "sample_rate",
    "channels",
    "model",
    "started",
    "ended",
    "ended_by",  # None, or "crash": its server died and a later one closed it
    "hops",
    "last_label",
    "last_confidence",
    "last_time",
    "last_end_s",  # seconds of audio its newest hop reached
]


def streams(
    conn: sqlite3.Connection,
    name: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
    *,
    ended: bool = False,
    writers: bool = False,
) -> list[dict]:
    """The sessions that overlap ``[since, until)`` (an open one reaches to now), oldest first;
    ``name``: only that stream's; ``ended``: only ended ones; ``limit`` keeps the newest (by
    start), like ``tail``. ``writers``: each also says ``writer_gone``: None when it ended; for
    an open one, whether its writer certainly writes no more (its server died and none has opened
    the file since to close it; false when that cannot be told or for a version-1 file's)."""
    where, args = _session_conditions(name, since, until, ended)
    columns = session_columns(conn, [*STREAM_COLUMNS, "writer"])
    sql = f"SELECT {columns} FROM sessions{where} ORDER BY started DESC, id DESC"
    if limit is not None:
        sql, args = sql + " LIMIT ?", [*args, int(limit)]
    sessions, gone = [], {}  # an open session's writer -> whether it is gone (asked once each)
    for row in reversed(conn.execute(sql, args).fetchall()):
        session, writer = dict(zip(STREAM_COLUMNS, row)), row[-1]
        if writers and session["ended"] is None:
            if writer is not None and writer not in gone:
                gone[writer] = writer_gone(writer)
            session["writer_gone"] = gone.get(writer, False)
        elif writers:
            session["writer_gone"] = None
        sessions.append(session)
    return sessions


def count_streams(conn: sqlite3.Connection, name=None, since=None, until=None, *, ended=False) -> int:
    """How many sessions :func:`streams` would list without a limit."""
    where, args = _session_conditions(name, since, until, ended)
    return conn.execute(f"SELECT count(*) FROM sessions{where}", args).fetchone()[0]


def _session_conditions(name, since, until, ended) -> tuple[str, list]:
    parts, args = [], []
    for sql, value in (("name = ?", name), ("(ended IS NULL OR ended >= ?)", since), ("started < ?", until)):
        if value is not None:
            parts.append(sql)
            args.append(value)
    if ended:
        parts.append("ended IS NOT NULL")
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


def iter_query(
    conn: sqlite3.Connection,
    stream: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
    session: int | None = None,
) -> Iterator[dict]:
    """Rows with ``since <= time < until`` in time order, one at a time (a reader of millions of
    rows holds one in memory). ``limit`` keeps the newest rows, like ``tail``."""
    where, args = _conditions(stream, since, until, session)
    columns = "s.name, h.session, h.time, h.hop, h.start_s, h.end_s, h.label, h.confidence, h.top, h.id"
    sql = f"SELECT {columns} FROM hops h JOIN sessions s ON s.id = h.session{where}"
    if limit is not None:
        # the newest `limit` rows, then back into time order
        sql = f"SELECT * FROM ({sql} ORDER BY h.time DESC, h.id DESC LIMIT ?) ORDER BY 3, 10"
        args.append(int(limit))
    else:
        sql += " ORDER BY h.time, h.id"
    for row in conn.execute(sql, args):
        yield _row(row)


def _conditions(stream, since, until, session) -> tuple[str, list]:
    parts, args = [], []
    for sql, value in (("s.name = ?", stream), ("h.time >= ?", since), ("h.time < ?", until)):
        if value is not None:
            parts.append(sql)
            args.append(value)
    if session is not None:
        parts.append("h.session = ?")
        args.append(session)
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


def _row(row: tuple) -> dict:
    record = dict(zip(ROW_COLUMNS, row))
    record["top"] = [{"label": label, "p": p} for label, p in json.loads(record["top"])]
    return record


class HistoryReader:
    """A read-only view of a history file (``coaudio history``): never creates it, never writes
    it, leaves no ``-wal``/``-shm`` where there were none (see ``history_file._reader_uri``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist")
        if self.path.is_dir():
            raise HistoryError(f"{self.path} is a folder, not a history file")
        self._conn = connect(self.path, readonly=True)
        try:
            if check_schema(self._conn, self.path):
                raise HistoryError(f"{self.path} is an empty SQLite database, not a coaudio history")
        except HistoryError:
            self._conn.close()
            raise

    def streams(self, name=None, since=None, until=None, limit=None, *, ended=False) -> list[dict]:
        """:func:`streams`, each with ``writer_gone``."""
        return streams(self._conn, name, since, until, limit, ended=ended, writers=True)

    def count_streams(self, name=None, since=None, until=None, *, ended=False) -> int:
        return count_streams(self._conn, name, since, until, ended=ended)

    def iter_query(self, stream=None, since=None, until=None, limit=None, session=None) -> Iterator[dict]:
        return iter_query(self._conn, stream, since, until, limit, session)

    def query(self, stream=None, since=None, until=None, limit=None, session=None) -> list[dict]:
        return list(self.iter_query(stream, since, until, limit, session))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_AGE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
TIME_FORMS = (
    "unix seconds (1764322800), an ISO 8601 date or time (2026-11-28, 2026-11-28T10:00:00 in local "
    "time, ...Z or ...+01:00), or an age meaning that long ago (90s, 10m, 2h, 7d, 2w)"
)


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from ``text``: unix seconds, ISO 8601 (no zone: local time) or an age
    (``10m`` = ten minutes before ``now``). Raises ValueError saying which forms work."""
    value = text.strip()
    age = _AGE.fullmatch(value)
    if age:
        return (time.time() if now is None else now) - float(age[1]) * _UNIT_S[age[2].lower()]
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        return datetime.fromisoformat(value).timestamp()  # a naive time is local, as users mean it
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time; give {TIME_FORMS}") from None


def csv_header() -> str:
    return ",".join(ROW_COLUMNS) + "\n"


def csv_lines(rows) -> Iterator[str]:
    """Each row as one CSV line (no header); ``top`` as ``label:p;label:p``."""
    for row in rows:
        buffer = io.StringIO()
        values = dict(row, top=";".join(f"{t['label']}:{t['p']:.6f}" for t in row["top"]))
        csv.writer(buffer, lineterminator="\n").writerow(
            ["" if values[c] is None else values[c] for c in ROW_COLUMNS]
        )
        yield buffer.getvalue()


def to_csv(rows: list[dict]) -> str:
    """Header and rows as CSV text (the HTTP API's and the command line's CSV)."""
    return csv_header() + "".join(csv_lines(rows))
