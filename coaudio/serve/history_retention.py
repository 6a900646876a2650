"""Retention of the detection history: rows older than ``max_age_s``, and the oldest rows while
the file takes more than ``max_mb``.

The writer thread runs it between batches (never per insert): every ``purge_s`` seconds, and
sooner once about 5% of ``max_mb`` was written since the last check. Deletes go in chunks of
:data:`CHUNK_ROWS` rows, one transaction each that also lowers the sessions' row counters, so a
crash in the middle leaves whole chunks deleted and the counters right. A step stops after
:data:`STEP_BUDGET_S` so that queued rows are written in between; a purge of millions of rows
never holds up the streams' rows for long.

Deleted rows only free pages inside the file; ``auto_vacuum=INCREMENTAL`` (set when the file is
created) and ``PRAGMA incremental_vacuum`` give them back to the file system, and a TRUNCATE
checkpoint empties the WAL file, which counts towards ``max_mb`` too. Between two checks the file
may grow past the limit by what was written in between (about 5% of it).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path

from coaudio.serve.history_file import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

CHUNK_ROWS = 2000  # rows per delete transaction: a few ms of write lock each
STEP_BUDGET_S = 0.1  # then the writer writes queued rows before deleting more
TARGET_SHARE = 0.8  # a size purge deletes down to this share of max_mb, so it is not needed again at once
RECHECK_SHARE = 0.05  # check the size again after writing about this share of max_mb
MIB = 1024 * 1024


class Retention:
    """The limits of one history file, applied by the writer thread through its connection."""

    def __init__(self, conn, path: Path, max_age_s: float | None, max_mb: float | None, purge_s: float):
        self.conn, self.path, self.max_age_s, self.purge_s = conn, path, max_age_s, purge_s
        self.max_bytes = None if max_mb is None else max_mb * MIB
        # a server that starts again applies the limits to what the last one left, at once
        self.due = time.monotonic() if (max_age_s is not None or max_mb is not None) else math.inf
        self.purged = 0
        self._row_bytes = 200.0  # file bytes per row, measured at each size check
        self._written_bytes = 0.0  # estimated since the last check
        self._over = False  # in a size purge: delete down to TARGET_SHARE
        self._deleted = 0  # rows deleted since the last vacuum
        self._failing = False
        if self.max_bytes is not None:
            self._bound_wal(self.max_bytes)

    def _bound_wal(self, max_bytes: float) -> None:
        """A small limit needs a small WAL: the default checkpoints at 1000 pages (4 MiB)."""
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        pages = max(16, min(1000, int(RECHECK_SHARE * max_bytes / page_size)))
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        self.conn.execute(f"PRAGMA journal_size_limit = {int(RECHECK_SHARE * max_bytes)}")

    def wrote(self, rows: int) -> None:
        """The writer committed ``rows``: check the size early once enough was written."""
        if self.max_bytes is None:
            return
        self._written_bytes += rows * self._row_bytes
        if self._written_bytes > RECHECK_SHARE * self.max_bytes:
            self.due = min(self.due, time.monotonic())

    def step(self) -> None:
        """Delete for at most STEP_BUDGET_S; the next step is due at once if more is left."""
        more = self._delete_for(STEP_BUDGET_S)
        if not more:
            self._finish_round()
        self.due = time.monotonic() + (0.0 if more else self.purge_s)

    def run(self) -> int:
        """Apply the limits to the end now; returns the rows deleted."""
        before = self.purged
        self._delete_for(math.inf)
        self._finish_round()
        self.due = time.monotonic() + self.purge_s
        return self.purged - before

    def _delete_for(self, budget_s: float) -> bool:
        """Delete chunks until none is left (False) or the budget is spent (True)."""
        start = time.monotonic()
        while self._delete_chunk():
            if time.monotonic() - start >= budget_s:
                return True
        return False

    def _delete_chunk(self) -> int:
        if self.max_age_s is not None:
            deleted = self._delete("WHERE time < ?", (time.time() - self.max_age_s,), CHUNK_ROWS)
            if deleted:
                return deleted
        excess = self._excess_rows()
        return self._delete("", (), min(excess, CHUNK_ROWS)) if excess else 0

    def _delete(self, where: str, args: tuple, limit: int) -> int:
        """The oldest ``limit`` rows matching ``where``, with the counters, in one transaction."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            sessions = self.conn.execute(
                f"DELETE FROM hops WHERE id IN (SELECT id FROM hops {where} ORDER BY time, id LIMIT ?) "
                "RETURNING session",
                (*args, limit),
            ).fetchall()
            counts = Counter(session for (session,) in sessions)
            self.conn.executemany(
                "UPDATE sessions SET hops = hops - ? WHERE id = ?", [(n, s) for s, n in counts.items()]
            )
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed(exc)
            return 0
        self.purged += len(sessions)
        self._deleted += len(sessions)
        return len(sessions)

    def _excess_rows(self) -> int:
        """How many of the oldest rows to delete for the size limit (0: none)."""
        if self.max_bytes is None:
            return 0
        self._over = self._over or self.file_bytes() > self.max_bytes
        page_size, pages, free = (
            self.conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_size", "page_count", "freelist_count")
        )
        used = (pages - free) * page_size  # what the file shrinks to after a vacuum
        rows = self.conn.execute("SELECT coalesce(sum(hops), 0) FROM sessions").fetchone()[0]
        if rows > 0:
            self._row_bytes = used / rows
        target = TARGET_SHARE * self.max_bytes
        if not self._over or rows <= 0 or used <= target:
            return 0
        return max(1, math.ceil((used - target) / self._row_bytes))

    def file_bytes(self) -> int:
        """The file and its WAL, as the file system counts them."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
            except OSError:
                pass  # no WAL right now
        return total

    def _finish_round(self) -> None:
        """Forget ended sessions with no rows left, give freed pages back, empty the WAL."""
        cutoff = time.time() - (self.max_age_s if self.max_age_s is not None else 0.0)
        try:
            if self.max_age_s is not None or self._over:
                self.conn.execute(
                    "DELETE FROM sessions WHERE hops <= 0 AND ended IS NOT NULL AND ended < ?", (cutoff,)
                )
            if self._deleted or self._over:
                self.conn.executescript("PRAGMA incremental_vacuum;")  # executescript steps it to the end
                self._checkpoint()
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        if self._deleted:
            log.info("retention deleted %d rows from the history %s", self._deleted, self.path)
        self._deleted, self._over, self._written_bytes = 0, False, 0.0
        self._failing = False

    def _checkpoint(self) -> None:
        """A TRUNCATE checkpoint waits for readers of old snapshots; wait briefly, not 5 s (a
        reader that is still busy leaves the WAL for the next round)."""
        self.conn.execute("PRAGMA busy_timeout = 100")
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def _failed(self, exc: Exception) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolled it back itself
        if not self._failing:
            log.warning(
                "retention cannot delete from the history %s (%s); trying again later", self.path, exc
            )
        self._failing = True
