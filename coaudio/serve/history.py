"""The detection history of ``coaudio serve``: every labelled hop of every stream, in SQLite.

The server's threads hand rows to :meth:`History.add`, which only enqueues; one writer thread
commits them in batches (one transaction per ``flush_s`` or per ``batch_rows`` rows), so a slow
disk never stalls a stream. The file is in WAL mode: readers (:meth:`History.query`, ``coaudio
history``, other processes) read committed rows while the writer writes, and neither blocks the
other. ``synchronous=NORMAL`` keeps every committed batch through a crash of the process (SIGKILL);
only a power cut can lose the last batches, never corrupt the file.

Write failures (disk full, a read-only file, a lock held too long by another process) never reach
the caller: the batch is dropped, counted in :meth:`History.stats`, logged once, and the writer
goes on and writes again when the condition clears. Retention (``max_age_s``, ``max_mb``) runs in
the writer between batches; see :mod:`coaudio.serve.history_retention`. Opening the file brings an
older schema up to date and closes the sessions that servers which died left open
(:mod:`coaudio.serve.history_file`, :mod:`coaudio.serve.history_recovery`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path

from coaudio.serve.history_file import HistoryError, connect, open_for_writing
from coaudio.serve.history_query import (
    HistoryReader,
    count_streams,
    iter_query,
    parse_time,
    streams,
    to_csv,
)
from coaudio.serve.history_recovery import writer_identity
from coaudio.serve.history_retention import Retention

__all__ = ["History", "HistoryError", "HistoryReader", "default_db_path", "parse_time", "to_csv"]

log = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO hops (session, time, hop, start_s, end_s, label, confidence, top) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SESSION = (
    "INSERT INTO sessions (name, kind, source, sample_rate, channels, model, started, writer) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def default_db_path() -> Path:
    """``$COAUDIO_HISTORY``, else ``$XDG_DATA_HOME/coaudio/history.sqlite``, else
    ``~/.local/share/coaudio/history.sqlite``."""
    if os.environ.get("COAUDIO_HISTORY"):
        return Path(os.environ["COAUDIO_HISTORY"]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "coaudio" / "history.sqlite"


def _record_row(session: int, record: dict) -> tuple | None:
    """The hops row of one per-hop record; None for a warm-up hop (no label yet)."""
    if record.get("label") is None:
        return None
    try:
        top = json.dumps([[t["label"], round(float(t["p"]), 6)] for t in record.get("top") or []])
        return (
            session,
            float(record.get("time") or time.time()),
            int(record["hop"]),
            float(record["start_s"]),
            float(record["end_s"]),
            str(record["label"]),
            float(record["confidence"]),
            top,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a per-hop record ({exc!r} in {record!r:.200})") from None


class History:
    """The history file, written by a background thread; see the module docstring.

    ``max_age_s`` deletes rows older than that; ``max_mb`` deletes the oldest rows while the file
    and its WAL take more than that (checked every ``purge_s`` seconds and after about 5% of the
    limit was written). ``max_pending`` rows may wait in memory; more are dropped and counted.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_age_s: float | None = None,
        max_mb: float | None = None,
        flush_s: float = 0.5,
        batch_rows: int = 1000,
        purge_s: float = 60.0,
        max_pending: int = 100_000,
    ):
        self.path = Path(path).expanduser()
        self._conn = open_for_writing(self.path)  # the writer thread's alone (and close()'s after it)
        # open_stream's own connection: it waits for SQLite's write lock between two of the
        # writer's transactions (a few ms), not for a whole retention step
        self._opener = connect(self.path, readonly=False)
        self._open_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._flush_s, self._batch_rows, self._max_pending = flush_s, batch_rows, max_pending
        self._retention = Retention(self._conn, self.path, max_age_s, max_mb, purge_s)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._written = self._pending = self._dropped = 0
        self._last_error: str | None = None
        self._failing = False
        self._unstored: dict[int, tuple] = {}  # handle < 0 -> session row not yet written
        self._stored_as: dict[int, int] = {}  # such a handle -> its id once written
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="coaudio-history", daemon=True)
        self._thread.start()

    # -- the server's side ----------------------------------------------------------------------

    def open_stream(
        self, name: str, kind: str, source: str, sample_rate: int, channels: int, model: str
    ) -> int:
        """Record a new session (started now) and return its id. If the file cannot be written
        right now, returns a negative handle whose session row is written with its first rows."""
        meta = (
            *(str(name), str(kind), str(source), int(sample_rate), int(channels), str(model)),
            *(time.time(), writer_identity()),
        )
        with self._open_lock:
            try:
                return self._opener.execute(_SESSION, meta).lastrowid
            except sqlite3.Error as exc:
                self._note_failure(0, exc)
            handle = -(len(self._unstored) + 1)
            self._unstored[handle] = meta
            return handle

    def add(self, session: int, records: list[dict]) -> None:
        """Enqueue the labelled hops of ``records`` (the server's per-hop dicts); never blocks.
        Raises ValueError for a dict that is not a per-hop record (a caller's bug)."""
        rows = [row for row in (_record_row(session, r) for r in records) if row is not None]
        if not rows:
            return
        with self._stats_lock:  # and the put under it too: nothing may follow close()'s "stop"
            if self._closed or self._pending + len(rows) > self._max_pending:
                self._count_dropped(len(rows), "closed" if self._closed else "the writer is behind")
                return
            self._pending += len(rows)
            self._queue.put(("rows", rows))  # SimpleQueue.put never blocks

    def end_stream(self, session: int) -> None:
        """Mark the session ended (now), after its queued rows; does not wait."""
        with self._stats_lock:
            if not self._closed:
                self._queue.put(("end", (session, time.time())))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued so far is committed (or dropped)."""
        if self._thread.is_alive():
            done = threading.Event()
            self._queue.put(("flush", done))
            done.wait(timeout)

    def purge(self) -> int:
        """Apply the retention limits now, to the end; returns the rows this call deleted."""
        if not self._thread.is_alive():
            return 0
        done, result = threading.Event(), []
        self._queue.put(("purge", (done, result)))
        done.wait()
        return result[0] if result else 0

    def close(self) -> None:
        """Write what is queued, stop the writer and close the file; idempotent."""
        with self._stats_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(("stop", None))
        self._thread.join()
        with self._open_lock:
            self._opener.close()
        self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reads: a fresh read-only connection each, so they never wait for the writer -----------

    def streams(self, name=None, since=None, until=None, limit=None, *, ended=False) -> list[dict]:
        """The sessions, oldest first: see :func:`~coaudio.serve.history_query.streams`."""
        conn = connect(self.path, readonly=True)
        try:
            return streams(conn, name, since, until, limit, ended=ended)
        finally:
            conn.close()

    def count_streams(self, name=None, since=None, until=None, *, ended=False) -> int:
        conn = connect(self.path, readonly=True)
        try:
            return count_streams(conn, name, since, until, ended=ended)
        finally:
            conn.close()

    def query(self, stream=None, since=None, until=None, limit=None, session=None) -> list[dict]:
        """Rows with ``since <= time < until`` in time order; ``limit`` keeps the newest."""
        conn = connect(self.path, readonly=True)
        try:
            return list(iter_query(conn, stream, since, until, limit, session))
        finally:
            conn.close()

    def stats(self) -> dict:
        """Rows written, pending and dropped, the last write error, retention's deletions."""
        with self._stats_lock:
            return {
                "path": str(self.path),
                "rows_written": self._written,
                "rows_pending": self._pending,
                "rows_dropped": self._dropped,
                "rows_purged": self._retention.purged,
                "last_error": self._last_error,
                "writing": not self._failing,
            }

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[tuple] = []
        batch_due = math.inf
        while True:
            wait = min(batch_due, self._retention.due) - time.monotonic()
            try:
                kind, payload = self._queue.get(timeout=max(0.0, wait) if wait < math.inf else None)
            except queue.Empty:
                kind, payload = "tick", None
            if kind == "rows":
                batch_due = batch_due if batch else time.monotonic() + self._flush_s
                batch.extend(payload)
            if batch and (
                kind not in ("rows", "tick")
                or len(batch) >= self._batch_rows
                or time.monotonic() >= batch_due
            ):
                self._guarded(self._write, batch)
                batch, batch_due = [], math.inf
            if kind == "stop":
                return
            self._guarded(self._barrier, kind, payload)
            if time.monotonic() >= self._retention.due:
                self._guarded(self._retention.step)

    def _guarded(self, work, *args) -> None:
        """Run ``work``; an unexpected error is logged, never ends the thread."""
        try:
            work(*args)
        except Exception:  # a defect: the history must not take the server down with it
            log.exception("unexpected error in the history writer (it keeps running)")

    def _barrier(self, kind: str, payload) -> None:
        if kind == "end":
            self._end(*payload)
        elif kind == "flush":
            payload.set()
        elif kind == "purge":
            done, result = payload
            try:
                result.append(self._retention.run())
            finally:
                done.set()

    def _write(self, rows: list[tuple]) -> None:
        """One transaction: the rows, the sessions' counters, any session row not yet written."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            ids = self._session_ids({row[0] for row in rows})
            self._conn.executemany(_INSERT, [(ids[row[0]],) + row[1:] for row in rows])
            self._update_counters(rows, ids)
            self._conn.execute("COMMIT")
        except Exception as exc:  # not only sqlite3.Error: the rows must be counted either way
            self._rollback()
            self._note_failure(len(rows), exc)
            return
        self._stored_as.update({h: i for h, i in ids.items() if h < 0})
        self._note_success(len(rows))
        self._retention.wrote(len(rows))

    def _session_ids(self, handles: set[int]) -> dict[int, int]:
        """Handle -> session id, writing the session rows that open_stream could not."""
        ids = {}
        for handle in handles:
            if handle >= 0 or handle in self._stored_as:
                ids[handle] = self._stored_as.get(handle, handle)
            else:
                ids[handle] = self._conn.execute(_SESSION, self._unstored[handle]).lastrowid
        return ids

    def _update_counters(self, rows: list[tuple], ids: dict[int, int]) -> None:
        last: dict[int, tuple] = {}
        counts: dict[int, int] = {}
        for row in rows:
            last[row[0]] = row
            counts[row[0]] = counts.get(row[0], 0) + 1
        self._conn.executemany(
            "UPDATE sessions SET hops = hops + ?, last_label = ?, last_time = ?, last_end_s = ?, "
            "last_confidence = ? WHERE id = ?",
            [(counts[h], row[5], row[1], row[4], row[6], ids[h]) for h, row in last.items()],
        )

    def _end(self, session: int, ended: float) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            ids = self._session_ids({session})
            # ended_by: a session closed by mistake as a dead server's gets its real end
            self._conn.execute(
                "UPDATE sessions SET ended = ?, ended_by = NULL WHERE id = ?", (ended, ids[session])
            )
            self._conn.execute("COMMIT")
        except Exception as exc:  # an unknown handle included
            self._rollback()
            self._note_failure(0, exc)
            return
        self._stored_as.update({h: i for h, i in ids.items() if h < 0})
        self._note_success(0)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolled it back itself (e.g. after an I/O error)

    def _note_failure(self, rows: int, exc: Exception) -> None:
        with self._stats_lock:
            self._pending -= rows
            self._dropped += rows
            self._last_error = f"{exc.__class__.__name__}: {exc}"
            first = not self._failing
            self._failing = True
        if first:  # once per episode: a full disk would otherwise log twice a second
            log.warning("cannot write the history %s (%s); dropping its rows until it can", self.path, exc)

    def _note_success(self, rows: int) -> None:
        with self._stats_lock:
            self._pending -= rows
            self._written += rows
            recovered, self._failing = self._failing, False
            dropped = self._dropped
        if recovered:
            log.warning("writing the history %s again (%d rows dropped so far)", self.path, dropped)

    def _count_dropped(self, rows: int, why: str) -> None:
        """Rows refused by add() (the caller holds the stats lock)."""
        self._dropped += rows
        if self._last_error != why:
            log.warning("dropping history rows (%s)", why)
        self._last_error = why
