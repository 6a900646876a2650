"""Sessions in the history: schema 2's fields, files of schema 1, sessions of servers that died,
listing sessions by time and count, and readers that leave no files behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from coaudio.serve import history_file
from coaudio.serve.history import History, HistoryReader
from coaudio.serve.history_recovery import writer_gone, writer_identity
from tests.serve.history_writer import record

WRITER = Path(__file__).with_name("history_writer.py")

# A file as coaudio wrote it before schema 2, statement for statement (frozen: do not update).
SCHEMA_1 = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
    sample_rate INTEGER NOT NULL, channels INTEGER NOT NULL, model TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, hops INTEGER NOT NULL DEFAULT 0, last_label TEXT, last_time REAL
);
CREATE TABLE hops (
    id INTEGER PRIMARY KEY, session INTEGER NOT NULL REFERENCES sessions(id), time REAL NOT NULL,
    hop INTEGER NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL, label TEXT NOT NULL,
    confidence REAL NOT NULL, top TEXT NOT NULL
);
CREATE INDEX hops_time ON hops(time);
CREATE INDEX hops_session_time ON hops(session, time);
"""


def _schema_1_file(path: Path) -> None:
    """Two sessions: 'done' (hops 0-4, ended) and 'left' (hops 0-2, never ended)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.executescript(
        f"BEGIN; {SCHEMA_1}; PRAGMA application_id = {history_file.APPLICATION_ID}; "
        "PRAGMA user_version = 1; COMMIT;"
    )
    conn.execute("PRAGMA journal_mode = WAL")
    for sid, name, n, ended in ((1, "done", 5, record(4)["time"] + 1), (2, "left", 3, None)):
        last = record(n - 1)
        conn.execute(
            "INSERT INTO sessions VALUES (?, ?, 'websocket', 'x', 16000, 1, 'm', ?, ?, ?, ?, ?)",
            (sid, name, record(0)["time"] - 1, ended, n, last["label"], last["time"]),
        )
        for h in range(n):
            r = record(h)
            conn.execute(
                "INSERT INTO hops (session, time, hop, start_s, end_s, label, confidence, top) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, '[]')",
                (sid, r["time"], h, r["start_s"], r["end_s"], r["label"], r["confidence"]),
            )
    conn.close()


def _version(path: Path) -> int:
    """PRAGMA user_version from the file's header (bytes 60-63), opening no connection."""
    return int.from_bytes(path.read_bytes()[60:64], "big")


def _sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(path.name + "-*"))


def test_a_schema_1_file_is_read_as_it_is_and_upgraded_by_a_writer(tmp_path):
    path = tmp_path / "old.sqlite"
    _schema_1_file(path)
    with HistoryReader(path) as reader:  # a reader reads what schema 1 lacks from the hops
        done, left = reader.streams()
    assert (done["last_end_s"], done["last_confidence"]) == (record(4)["end_s"], record(4)["confidence"])
    assert left["ended"] is None and left["ended_by"] is None
    assert _version(path) == 1 and _sidecars(path) == []  # and changes nothing, leaves nothing
    with History(path) as history:
        done, left = history.streams()
        assert done["last_end_s"] == record(4)["end_s"] and done["ended_by"] is None  # filled in
        # a schema-1 session names no writer: the only one that could write it is an older coaudio
        assert left["ended"] == record(2)["time"] and left["ended_by"] == "crash"
        assert left["last_confidence"] == record(2)["confidence"]
        assert [r["hop"] for r in history.query(stream="left")] == [0, 1, 2]
        session = history.open_stream("new", "url", "u", 16_000, 1, "m")
        history.add(session, [record(7)])
        history.end_stream(session)
        history.flush()
        new = history.streams("new")[0]
    assert new["last_end_s"] == record(7)["end_s"] and new["ended"] >= new["started"]
    assert _version(path) == history_file.SCHEMA_VERSION


def test_ended_sessions_keep_the_last_hops_end_and_confidence(tmp_path):
    with History(tmp_path / "h.sqlite") as history:
        session = history.open_stream("a", "websocket", "x", 16_000, 1, "m")
        history.add(session, [record(h) for h in range(6)])
        history.add(session, [{**record(6), "label": None}])  # a warm-up hop is not a labelled one
        history.end_stream(session)
        history.flush()
        (entry,) = history.streams()
    assert entry["last_end_s"] == record(5)["end_s"] and entry["last_confidence"] == record(5)["confidence"]
    assert entry["last_label"] == record(5)["label"] and entry["ended_by"] is None


def _writer(path: Path, name: str) -> tuple[subprocess.Popen, int]:
    """history_writer.py writing session ``name`` until killed; waits for its first batch."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), "write", name], stdout=subprocess.PIPE, text=True
    )
    session = int(proc.stdout.readline().split()[1])
    assert proc.stdout.readline().startswith("committed")
    return proc, session


def test_sessions_of_a_live_writer_stay_open_and_of_a_killed_one_are_closed(tmp_path):
    """Two writers on one file: opening the file never closes the other's live session; once
    it is SIGKILLed (and gone), the next writer closes it at its newest hop's time."""
    path = tmp_path / "h.sqlite"
    live, session = _writer(path, "other")
    try:
        with History(path) as history:
            assert history.streams("other")[0]["ended"] is None
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
    with HistoryReader(path) as reader:
        (left,) = reader.streams("other")
    assert left["ended"] is None  # a reader closes nothing
    with History(path) as history:
        (closed,) = history.streams("other")
        newest = history.query(session=session, limit=1)[0]
    assert closed["ended_by"] == "crash" and closed["last_time"] == newest["time"]
    assert closed["ended"] == max(closed["started"], newest["time"])  # the writer's hop times are of 2023
    assert closed["last_end_s"] == newest["end_s"] and closed["hops"] > 0


def test_writer_identity_tells_a_reused_pid_from_its_process():
    me = json.loads(writer_identity())
    assert not writer_gone(writer_identity())
    if "boot" not in me:
        pytest.skip("no /proc: only the pid can be asked, and a reused pid counts as alive")
    assert writer_gone(json.dumps(dict(me, start=me["start"] + 1)))  # this pid, another process
    assert writer_gone(json.dumps(dict(me, boot="another-boot")))  # another boot or machine
    assert not writer_gone(json.dumps(dict(me, pidns="pid:[1]", start=0)))  # cannot tell: open
    assert not writer_gone("not an identity") and writer_gone(None)


@pytest.fixture()
def sessions_db(tmp_path) -> Path:
    """Sessions a..e, each a minute long and starting an hour after the last one; e is open."""
    path = tmp_path / "s.sqlite"
    with History(path) as history:
        for i, name in enumerate("abcde"):
            session = history.open_stream(name, "websocket", "x", 16_000, 1, "m")
            history.add(session, [record(h, t0=1_700_000_000.0 + 3600 * i) for h in range(3)])
            if name != "e":
                history.end_stream(session)
    conn = sqlite3.connect(path, isolation_level=None)  # the times the test needs
    for i, name in enumerate("abcde"):
        start = 1_700_000_000.0 + 3600 * i
        ended = None if name == "e" else start + 60
        conn.execute("UPDATE sessions SET started = ?, ended = ? WHERE name = ?", (start, ended, name))
    conn.close()
    return path


@pytest.mark.parametrize(
    "kwargs,want",
    [
        ({}, "abcde"),
        ({"limit": 2}, "de"),  # the newest, oldest first
        ({"since": 1_700_000_000.0 + 3600 + 30}, "bcde"),  # b ends after since: it overlaps
        ({"since": 1_700_000_000.0 + 3600 + 61}, "cde"),
        ({"until": 1_700_000_000.0 + 7200}, "ab"),  # c starts at until: not before it
        ({"since": 1_700_000_000.0 + 3600, "until": 1_700_000_000.0 + 7201, "limit": 1}, "c"),
        ({"since": 1_700_000_000.0 + 86_400}, "e"),  # an open session reaches to now
        ({"ended": True, "limit": 3}, "bcd"),
        ({"name": "b"}, "b"),
    ],
)
def test_streams_by_time_name_and_count(sessions_db, kwargs, want):
    with HistoryReader(sessions_db) as reader:
        names = "".join(s["name"] for s in reader.streams(**kwargs))
        count = reader.count_streams(**{k: v for k, v in kwargs.items() if k != "limit"})
    assert names == want and count >= len(want)


# -- readers leave no -wal/-shm next to a file that had none --------------------------------


def test_a_reader_of_a_quiet_copy_leaves_no_files(tmp_path):
    original = tmp_path / "h.sqlite"
    with History(original) as history:
        session = history.open_stream("a", "websocket", "x", 16_000, 1, "m")
        history.add(session, [record(h) for h in range(10)])
    copy = tmp_path / "copy" / "h.sqlite"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    before = copy.read_bytes()
    for _ in range(2):
        with HistoryReader(copy) as reader:
            assert len(reader.query()) == 10 and _sidecars(copy) in ([], ["h.sqlite-shm", "h.sqlite-wal"])
        assert _sidecars(copy) == []
    assert copy.read_bytes() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs to read as another user")
def test_a_reader_in_a_read_only_folder_reads_and_leaves_nothing(tmp_path):
    """Another user's folder: SQLite can read a WAL file there only as immutable (no writer
    can be live where no -wal can be made)."""
    folder = Path(tempfile.mkdtemp(prefix="coaudio-ro-"))  # not under tmp_path: nobody may enter it
    try:
        with History(folder / "h.sqlite") as history:
            session = history.open_stream("a", "websocket", "x", 16_000, 1, "m")
            history.add(session, [record(h) for h in range(4)])
        folder.chmod(0o755)
        code = (
            "import os\nfrom coaudio.serve.history import HistoryReader\n"
            "os.setgid(65534); os.setuid(65534)  # after the imports: the venv may be root's alone\n"
            f"print(len(HistoryReader({str(folder / 'h.sqlite')!r}).query()))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == "4", done.stderr
        assert _sidecars(folder / "h.sqlite") == []
    finally:
        shutil.rmtree(folder)


def test_a_reader_of_a_live_file_sees_the_newest_rows_and_leaves_its_files(tmp_path):
    path = tmp_path / "live.sqlite"
    proc, session = _writer(path, "live")
    try:
        seen = []
        for _ in range(3):
            with HistoryReader(path) as reader:
                seen.append(reader.streams("live")[0]["hops"])
            time.sleep(0.05)
            assert _sidecars(path) == ["live.sqlite-shm", "live.sqlite-wal"]  # the writer's, kept
        assert seen[0] > 0 and seen[-1] > seen[0]  # committed batches show up as they come
        with History(path) as other:  # and the writer still writes after the readers went
            before = other.streams("live")[0]["hops"]
            time.sleep(0.1)
            assert other.streams("live")[0]["hops"] > before
    finally:
        proc.kill()
        proc.wait()


def test_a_reader_tells_a_dead_writers_open_session_and_closes_nothing(tmp_path):
    """Until a server opens the file again, a SIGKILLed writer's session stays open in it; the
    reader says that its writer is gone (and a live writer's is not), and closes nothing."""
    path = tmp_path / "h.sqlite"
    with History(path) as history:
        history.end_stream(history.open_stream("ended", "ws", "x", 16_000, 1, "m"))
    live, _ = _writer(path, "live")  # first: a writer that opens the file closes dead ones' sessions
    try:
        dead, _ = _writer(path, "dead")
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        with HistoryReader(path) as reader:
            listed = {s["name"]: s for s in reader.streams()}
        with HistoryReader(path) as reader:
            still_open = [s["name"] for s in reader.streams() if s["ended"] is None]
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
    assert listed["dead"]["ended"] is None and listed["dead"]["writer_gone"] is True
    assert listed["live"]["ended"] is None and listed["live"]["writer_gone"] is False
    assert listed["ended"]["writer_gone"] is None
    assert sorted(still_open) == ["dead", "live"]  # reading closed nothing


def test_a_schema_1_files_open_session_is_not_called_gone_by_a_reader(tmp_path):
    """A version-1 session names no writer: the reader cannot tell, so it stays plain open."""
    path = tmp_path / "old.sqlite"
    _schema_1_file(path)
    with HistoryReader(path) as reader:
        done, left = reader.streams()
    assert (done["writer_gone"], left["writer_gone"]) == (None, False)
