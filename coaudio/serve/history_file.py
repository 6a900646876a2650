"""The history file: opening it (:func:`open_for_writing`, :func:`connect`), its schema,
recognising it, and upgrading an older one in place.

A file is ours when its header carries :data:`APPLICATION_ID`; ``PRAGMA user_version`` is the
schema version, so a newer coaudio's file is refused with a message instead of misread.

Versions:

1. ``sessions`` and ``hops``.
2. ``sessions`` gains ``last_end_s`` and ``last_confidence`` (so an ended session says how much
   audio it covered and how sure its last label was, like a live one), ``ended_by`` (``crash``:
   closed by a later server because its own server died, see
   :mod:`coaudio.serve.history_recovery`) and ``writer`` (the process that writes it), plus
   indexes for listing the newest sessions.

A writer upgrades an older file when it opens it (:func:`upgrade`: ``ALTER TABLE ... ADD
COLUMN`` in one transaction, which SQLite does without rewriting the rows). Readers never
upgrade: :func:`session_columns` reads what a version-1 file lacks from its hops instead.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import tempfile
from pathlib import Path

from coaudio.serve.history_recovery import close_orphans

log = logging.getLogger(__name__)

APPLICATION_ID = 0x636F4148  # "coAH" in the SQLite header: this file is a coaudio history
SCHEMA_VERSION = 2
SQLITE_NOTADB = 26  # the error code of "file is not a database"
SQLITE_READONLY = 8  # "attempt to write a readonly database" (the primary code of its variants)
SQLITE_CANTOPEN = 14  # "unable to open database file" (the file, or its -journal, -wal or -shm)
COMPANIONS = ("-wal", "-shm")  # the files SQLite keeps beside a WAL database
BUSY_TIMEOUT_MS = 5000  # another process's write transaction: wait this long before giving up

SESSIONS = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,            -- the stream's name (several sessions may share it)
    kind TEXT NOT NULL,            -- websocket, url, device, ...
    source TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,  -- Hz, of the incoming audio
    channels INTEGER NOT NULL,
    model TEXT NOT NULL,
    started REAL NOT NULL,         -- unix seconds
    ended REAL,                    -- unix seconds; NULL while live
    hops INTEGER NOT NULL DEFAULT 0,  -- rows of it in hops (retention lowers it)
    last_label TEXT,
    last_time REAL
);
"""
HOPS = """
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
# version 2, as statements that turn a version-1 file into one (a new file runs them too)
TO_VERSION_2 = """
ALTER TABLE sessions ADD COLUMN last_end_s REAL;       -- end_s of its newest hop: audio seconds covered
ALTER TABLE sessions ADD COLUMN last_confidence REAL;  -- confidence of its newest hop
ALTER TABLE sessions ADD COLUMN ended_by TEXT;         -- NULL: ended by its server; 'crash': see above
ALTER TABLE sessions ADD COLUMN writer TEXT;           -- the writing process (history_recovery)
CREATE INDEX sessions_started ON sessions(started);
CREATE INDEX sessions_ended ON sessions(ended);
CREATE INDEX sessions_open ON sessions(writer) WHERE ended IS NULL;
"""
BACKFILL_2 = """
UPDATE sessions SET (last_end_s, last_confidence) = (
    SELECT end_s, confidence FROM hops h WHERE h.session = sessions.id ORDER BY time DESC, id DESC LIMIT 1
);
"""
# the version-2 columns a version-1 file lacks, as a reader computes them instead
_NEWEST_HOP = "(SELECT {} FROM hops h WHERE h.session = sessions.id ORDER BY time DESC, id DESC LIMIT 1)"
V1_FALLBACK = {
    "last_end_s": _NEWEST_HOP.format("end_s"),
    "last_confidence": _NEWEST_HOP.format("confidence"),
    "ended_by": "NULL",
    "writer": "NULL",
}


class HistoryError(RuntimeError):
    """A history database that cannot be used, said in one line that names the file."""


def _not_sqlite(path: Path, exc: Exception) -> HistoryError:
    return HistoryError(f"{path} is not a coaudio history (not an SQLite database: {exc})")


def schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; 0 for an empty database (to be created). Raises
    :class:`HistoryError` when it is not SQLite, not ours, or of a newer schema."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise _not_sqlite(path, exc) from None
    if app_id == 0 and version == 0 and tables == 0:
        return 0
    if app_id != APPLICATION_ID:
        raise HistoryError(f"{path} is an SQLite database but not a coaudio history; give another file")
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"{path} was written by a newer coaudio (history schema {version}; this one knows up "
            f"to {SCHEMA_VERSION}); upgrade coaudio to read it"
        )
    return version


def check_schema(conn: sqlite3.Connection, path: Path) -> bool:
    """Whether the file is an empty database (to be created); raises like :func:`schema_version`."""
    return schema_version(conn, path) == 0


def create(conn: sqlite3.Connection) -> None:
    """The schema in one transaction: a crash leaves an empty file (created again) or a whole one."""
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only before the first table; lets max_mb shrink it
    _script(conn, SESSIONS + HOPS + TO_VERSION_2 + f"PRAGMA application_id = {APPLICATION_ID};")


def upgrade(conn: sqlite3.Connection, version: int) -> bool:
    """Bring a file of an older ``version`` to :data:`SCHEMA_VERSION` (one transaction); whether
    there was anything to do."""
    if version >= SCHEMA_VERSION:
        return False
    _script(conn, TO_VERSION_2 + BACKFILL_2)
    return True


def _script(conn: sqlite3.Connection, sql: str, version: int = SCHEMA_VERSION) -> None:
    """``sql`` (may be empty) and the schema version set to ``version``, in one write
    transaction: all of it, or (rolled back) none."""
    statements = f"{sql}; " if sql else ""
    try:
        conn.executescript(f"BEGIN IMMEDIATE; {statements}PRAGMA user_version = {version}; COMMIT;")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def session_columns(conn: sqlite3.Connection, columns: list[str]) -> str:
    """``columns`` of ``sessions`` as a SELECT list that also works on a version-1 file."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
    return ", ".join(c if c in present else f"{V1_FALLBACK[c]} AS {c}" for c in columns)


def open_for_writing(path: Path) -> sqlite3.Connection:
    """Create the folders and the file if needed, check that it is ours, bring an older schema
    up to date, and close the sessions of servers that died (history_recovery).

    A refusal leaves no ``-wal``/``-shm`` files that this call made: see :func:`_remove_made`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistoryError(
            f"cannot create the folder {path.parent} for the history: {exc.strerror}"
        ) from None
    if path.is_dir():
        raise HistoryError(f"{path} is a folder, not a history file")
    absent = [suffix for suffix in COMPANIONS if not os.path.lexists(f"{path.resolve()}{suffix}")]
    conn = None
    try:
        conn = connect(path, readonly=False)
        version = schema_version(conn, path)
        if version == 0:
            create(conn)
        conn.execute("PRAGMA journal_mode = WAL")
        if version:  # a real write, as create() made one: see _prove_writable
            _prove_writable(conn, version)
        if version and upgrade(conn, version):
            log.info("upgraded the history %s from schema %d", path, version)
        close_orphans(conn)
    except (sqlite3.Error, HistoryError) as exc:
        if conn is not None:
            conn.close()
        _remove_made(path, absent)
        if isinstance(exc, HistoryError):
            raise
        raise HistoryError(f"cannot write the history {path}: {exc}{_why(path, exc)}") from None
    return conn


def _remove_made(path: Path, absent: list[str]) -> None:
    """Remove the ``-wal`` and ``-shm`` files (of ``absent``, those missing before) that a
    refused open made. SQLite makes them as it opens a WAL file, and removes them when its last
    connection closes, but not a connection that it opened read-only (a file it may not write):
    such a refusal would leave an empty ``-wal`` and a ``-shm`` behind.

    Only when that is safe: the ``-wal`` holds no frames (no commit can be lost), and no
    connection uses the ``-shm`` (each holds a lock on it while open, see :func:`_locked`),
    such as a server or reader that opened the file meanwhile. Files that existed before are
    never touched."""
    base = str(path.resolve())
    made = [suffix for suffix in absent if os.path.lexists(base + suffix)]
    if not made:
        return
    wal, shm = base + "-wal", base + "-shm"
    try:
        if (os.path.exists(wal) and os.path.getsize(wal) > 0) or (os.path.exists(shm) and _locked(shm)):
            return
    except OSError as exc:
        log.debug("leaving %s's -wal/-shm files: %s", path, exc)
        return
    for suffix in made:
        try:
            os.unlink(base + suffix)
        except OSError as exc:
            log.debug("cannot remove %s%s: %s", path, suffix, exc)


def _locked(file: str) -> bool:
    """Whether any process holds a lock on ``file``, from ``/proc/locks`` (Linux), which
    names no file: read without opening it, because closing a file descriptor would drop the
    locks that this process's SQLite connections hold on it. False where there is no
    ``/proc/locks``: the empty ``-wal`` is the only test there."""
    inode = os.stat(file).st_ino
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            return any(m and int(m[1]) == inode for m in map(_LOCKED_INODE.search, locks))
    except OSError:
        return False


_LOCKED_INODE = re.compile(r" [0-9a-f]+:[0-9a-f]+:([0-9]+) ")  # major:minor:inode in /proc/locks


def _prove_writable(conn: sqlite3.Connection, version: int) -> None:
    """Rewrite the schema version as it is: fails now, with a clear message, when the file
    cannot be written. SQLite opens a file it may not write (``chattr +i``, a read-only mount,
    mode 444 for anyone but root) read-only without a word, and ``BEGIN IMMEDIATE`` succeeds on
    such a connection: only a write tells."""
    _script(conn, "", version)


def _why(path: Path, exc: sqlite3.Error) -> str:
    """The system's reason for SQLite's error, as " (...)" to end a message; "" if none."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code == SQLITE_READONLY:
        return _why_read_only(path)
    if code == SQLITE_CANTOPEN:
        return _why_cannot_open(path)
    return ""


def _why_read_only(path: Path) -> str:
    """For SQLite's "attempt to write a readonly database": the system's reason, e.g.
    " (opening it for writing: Operation not permitted)" for a file made immutable."""
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError as error:
        return f" (opening it for writing: {error.strerror})"
    return ""


def _why_cannot_open(path: Path) -> str:
    """For SQLite's "unable to open database file": a folder that cannot be written (``chattr
    +i``, a read-only mount, its mode), where SQLite cannot make the file, or the ``-wal`` and
    ``-shm`` files it keeps beside it. The system's words come from trying to create a file
    there (removed at once), as SQLite does not pass them on."""
    folder = path.resolve().parent
    if not folder.is_dir() or os.access(folder, os.W_OK | os.X_OK):
        return ""
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".probe", dir=folder)
    except OSError as error:
        if path.exists():
            needs = "SQLite keeps its -wal and -shm files beside the database"
        else:
            needs = "the file cannot be created there"
        return f" (the folder {folder} is not writable: {error.strerror}; {needs})"
    os.close(fd)
    os.unlink(probe)
    return ""


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread that
    holds it alone. ``readonly`` never creates the file, never writes it (``query_only``) and
    leaves no ``-wal``/``-shm`` files behind where there were none: see :func:`_reader_uri`."""
    uri = _reader_uri(path) if readonly else f"{path.resolve().as_uri()}?mode=rwc"
    conn = None
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        else:
            conn.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: commits survive a crash of the process
    except sqlite3.Error as exc:
        if conn is not None:  # closed now, not when collected: it may hold the file open
            conn.close()
        if getattr(exc, "sqlite_errorcode", None) == SQLITE_NOTADB:
            raise _not_sqlite(path, exc) from None
        raise HistoryError(f"cannot open the history {path}: {exc}{_why(path, exc)}") from None
    return conn


def _reader_uri(path: Path) -> str:
    """How a reader opens the file. SQLite reads a WAL file through its ``-wal`` and ``-shm``
    files and creates them when missing; a read-only connection can never delete them again,
    so a reader of a quiet file (a copy, a stopped server's) would leave both behind.

    * ``-wal`` exists: a server may be writing (every open writer has one), so read-only, which
      sees its newest commits. The files are the server's, not ours to remove.
    * No ``-wal`` and we may write the file and its folder: read-write, but ``query_only``. When
      such a connection closes as the file's last one, SQLite itself removes the ``-wal`` and
      ``-shm`` it made (it checkpoints first, which writes nothing: the WAL it made is empty). A
      server that started meanwhile still holds them, so then they stay, as they must.
    * No ``-wal`` and a folder we may not write: no writer can be live (it would have made a
      ``-wal`` there), and SQLite can read such a file only as ``immutable``: read it so. Nothing
      is locked then, so a server starting during the read could make it fail; it cannot harm
      the file, as nothing is written.
    * Otherwise (a file we may not write in a folder we may): read-only, which is safe but may
      leave the two files behind.
    """
    resolved = path.resolve()
    uri = resolved.as_uri()
    if os.path.exists(f"{resolved}-wal"):
        return f"{uri}?mode=ro"
    if os.access(resolved, os.W_OK) and os.access(resolved.parent, os.W_OK):
        return f"{uri}?mode=rw"
    if not os.access(resolved.parent, os.W_OK):
        return f"{uri}?mode=ro&immutable=1"
    return f"{uri}?mode=ro"
