"""The detection history's database: its schema, the checks on opening it, and every read.

One file, two tables: ``sessions`` (one row per stream session: a WebSocket connection, one run of
a URL or microphone source) and ``hops`` (one row per hop that produced a label). ``hops`` keeps
the per-session counters in ``sessions`` (``hops``, ``last_label``, ``last_time``) up to date in
the same transactions, so listing the streams never counts millions of rows.

A file is ours when its header carries :data:`APPLICATION_ID`; ``PRAGMA user_version`` is the
schema version, so a newer coaudio's file is refused with a message instead of misread.
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

APPLICATION_ID = 0x636F4148  # "coAH" in the SQLite header: this file is a coaudio history
SCHEMA_VERSION = 1
SQLITE_NOTADB = 26  # the error code of "file is not a database"
BUSY_TIMEOUT_MS = 5000  # another process's write transaction: wait this long before giving up

SCHEMA = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,            -- the stream's name (several sessions may share it)
    kind TEXT NOT NULL,            -- websocket, url, device, ...
    source TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,  -- Hz, of the incoming audio
    channels INTEGER NOT NULL,
    model TEXT NOT NULL,
    started REAL NOT NULL,         -- unix seconds
    ended REAL,                    -- unix seconds; NULL while live (or when its server died)
    hops INTEGER NOT NULL DEFAULT 0,  -- rows of it in hops (retention lowers it)
    last_label TEXT,
    last_time REAL
);
CREATE TABLE hops (
    id INTEGER PRIMARY KEY,        -- an alias of the rowid, so it never changes
    session INTEGER NOT NULL REFERENCES sessions(id),
    time REAL NOT NULL,            -- unix seconds when the hop was produced
    hop INTEGER NOT NULL,
    start_s REAL NOT NULL,         -- seconds into the stream
    end_s REAL NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    top TEXT NOT NULL              -- JSON [[label, p], ...], best first
);
CREATE INDEX hops_time ON hops(time);
CREATE INDEX hops_session_time ON hops(session, time);
"""

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
    "hops",
    "last_label",
    "last_time",
]


class HistoryError(RuntimeError):
    """A history database that cannot be used, said in one line that names the file."""


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread that
    holds it alone. ``readonly`` never creates the file."""
    target = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
    try:
        conn = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: commits survive a crash of the process
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == SQLITE_NOTADB:
            raise _not_sqlite(path, exc) from None
        raise HistoryError(f"cannot open the history {path}: {exc}") from None
    return conn


def _not_sqlite(path: Path, exc: Exception) -> HistoryError:
    return HistoryError(f"{path} is not a coaudio history (not an SQLite database: {exc})")


def check_schema(conn: sqlite3.Connection, path: Path) -> bool:
    """Whether the file is an empty database (to be created); raises :class:`HistoryError` when
    it is not SQLite, not ours, or of a newer schema."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise _not_sqlite(path, exc) from None
    if app_id == 0 and version == 0 and tables == 0:
        return True
    if app_id != APPLICATION_ID:
        raise HistoryError(f"{path} is an SQLite database but not a coaudio history; give another file")
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"{path} was written by a newer coaudio (history schema {version}; this one knows up "
            f"to {SCHEMA_VERSION}); upgrade coaudio to read it"
        )
    return False


def streams(conn: sqlite3.Connection, name: str | None = None) -> list[dict]:
    """The sessions, oldest first (optionally only those of stream ``name``)."""
    sql = f"SELECT {', '.join(STREAM_COLUMNS)} FROM sessions"
    args: tuple = ()
    if name is not None:
        sql, args = sql + " WHERE name = ?", (name,)
    rows = conn.execute(sql + " ORDER BY started, id", args).fetchall()
    return [dict(zip(STREAM_COLUMNS, row)) for row in rows]


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
    """A read-only view of a history file: never creates, never writes (``coaudio history``)."""

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

    def streams(self, name: str | None = None) -> list[dict]:
        return streams(self._conn, name)

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
