"""The history store of coaudio serve: batched WAL writes, crashes, retention, write failures,
files that are not ours, threads, and the text forms (times, CSV)."""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from coaudio.serve import history_file
from coaudio.serve.history import History, HistoryError, HistoryReader, default_db_path, parse_time, to_csv
from coaudio.serve.history_retention import CHUNK_ROWS
from tests.serve.history_writer import LABELS, record

WRITER = Path(__file__).with_name("history_writer.py")


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _wait_for(condition, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _check_rows(conn: sqlite3.Connection, session: int) -> list[int]:
    """The session's hops, each row checked field by field against the record it came from."""
    hops = []
    for hop, start, end, label, p, top, t in conn.execute(
        "SELECT hop, start_s, end_s, label, confidence, top, time FROM hops WHERE session = ? ORDER BY id",
        (session,),
    ):
        want = record(hop)
        assert (start, end, label, p, t) == (
            want["start_s"],
            want["end_s"],
            want["label"],
            want["confidence"],
            want["time"],
        )
        assert json.loads(top) == [[e["label"], e["p"]] for e in want["top"]]
        hops.append(hop)
    return hops


def _counters_match(conn: sqlite3.Connection) -> None:
    """Each session's row counter equals its rows: they change in the same transactions."""
    wrong = conn.execute(
        "SELECT s.id, s.hops, (SELECT count(*) FROM hops h WHERE h.session = s.id) AS n "
        "FROM sessions s WHERE s.hops != n"
    ).fetchall()
    assert wrong == []


# -- the file: created, set up, recognised ---------------------------------------------------


def test_a_new_file_is_created_with_its_folders_in_wal_mode(tmp_path):
    path = tmp_path / "a" / "b" / "history.sqlite"
    with History(path) as history:
        assert history._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    conn = _raw(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    assert conn.execute("PRAGMA application_id").fetchone()[0] == history_file.APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == history_file.SCHEMA_VERSION


def test_an_empty_file_becomes_a_history(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.touch()
    with History(path) as history:
        assert history.streams() == []


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda p: p.write_text("hello, not a database\n" * 100), "not an SQLite database"),
        (lambda p: _raw(p).execute("CREATE TABLE songs (title TEXT)"), "not a coaudio history"),
        (lambda p: (History(p).close(), _raw(p).execute("PRAGMA user_version = 99")), "newer coaudio"),
    ],
    ids=["not-sqlite", "not-ours", "newer-schema"],
)
def test_a_file_that_is_not_ours_is_refused_by_name(tmp_path, make, words):
    path = tmp_path / "other.sqlite"
    make(path)
    before = path.read_bytes()
    for opener in (History, HistoryReader):
        with pytest.raises(HistoryError) as caught:
            opener(path)
        message = str(caught.value)
        assert str(path) in message and words in message and "\n" not in message
    assert path.read_bytes() == before  # refused means untouched


def test_a_folder_that_cannot_be_made_is_a_history_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(HistoryError, match="cannot create the folder .*file"):
        History(tmp_path / "file" / "history.sqlite")
    with pytest.raises(HistoryError, match="is a folder"):
        History(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_a_read_only_file_is_refused_at_once(tmp_path):
    path = tmp_path / "h.sqlite"
    History(path).close()
    path.chmod(0o444)
    with pytest.raises(HistoryError, match="cannot write the history"):
        History(path)


def test_the_reader_never_creates_a_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        HistoryReader(tmp_path / "none.sqlite")
    assert list(tmp_path.iterdir()) == []


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.setenv("COAUDIO_HISTORY", str(tmp_path / "mine.sqlite"))
    assert default_db_path() == tmp_path / "mine.sqlite"
    monkeypatch.delenv("COAUDIO_HISTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_db_path() == tmp_path / "data" / "coaudio" / "history.sqlite"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")  # as the XDG spec says
    assert default_db_path() == Path.home() / ".local" / "share" / "coaudio" / "history.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_db_path() == Path.home() / ".local" / "share" / "coaudio" / "history.sqlite"


# -- writing and reading ------------------------------------------------------------------------


def test_rows_are_batched_and_read_back_in_time_order(tmp_path):
    with History(tmp_path / "h.sqlite", flush_s=30.0, batch_rows=100) as history:
        a = history.open_stream("kitchen", "websocket", "10.0.0.2", 16_000, 2, "synth")
        b = history.open_stream("garden", "url", "http://x/live", 44_100, 1, "synth")
        warm_up = {"hop": 0, "start_s": 0.0, "end_s": 0.96, "label": None, "confidence": None, "top": []}
        history.add(a, [warm_up] + [record(h) for h in range(1, 11)])
        assert history.query() == []  # waiting for its batch: neither 100 rows nor 30 s yet
        history.add(b, [record(h, 1_700_000_000.05) for h in range(1, 91)])
        assert _wait_for(lambda: len(history.query()) == 100)  # 100 rows: one batch, no flush needed
        rows = history.query()
        assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
        fields = ["hop", "start_s", "end_s", "label", "confidence", "top", "time"]
        assert rows[0] == dict({k: record(1)[k] for k in fields}, stream="kitchen", session=a)
        history.end_stream(a)
        history.flush()
        kitchen, garden = history.streams()
        assert kitchen["ended"] is not None and garden["ended"] is None
        assert (kitchen["hops"], kitchen["last_label"], kitchen["last_time"]) == (
            10,
            LABELS[0],
            record(10)["time"],
        )
        assert (garden["name"], garden["kind"], garden["source"], garden["sample_rate"]) == (
            "garden",
            "url",
            "http://x/live",
            44_100,
        )
        assert history.stats()["rows_written"] == 100 and history.stats()["rows_pending"] == 0


def test_query_filters(tmp_path):
    with History(tmp_path / "h.sqlite") as history:
        a = history.open_stream("kitchen", "websocket", "x", 16_000, 1, "m")
        b = history.open_stream("garden", "websocket", "x", 16_000, 1, "m")
        history.add(a, [record(h) for h in range(0, 100, 2)])
        history.add(b, [record(h) for h in range(1, 100, 2)])
        history.flush()
        t = record(50)["time"]
        assert {r["stream"] for r in history.query(stream="garden")} == {"garden"}
        assert [r["hop"] for r in history.query(since=t, until=record(54)["time"])] == [50, 51, 52, 53]
        assert [r["hop"] for r in history.query(limit=3)] == [97, 98, 99]  # the newest, oldest first
        assert [r["hop"] for r in history.query(stream="kitchen", limit=2)] == [96, 98]
        assert [r["hop"] for r in history.query(session=b, until=record(5)["time"])] == [1, 3]
        assert history.query(stream="nobody") == []


def test_malformed_records_are_the_callers_bug_and_warm_up_hops_are_skipped(tmp_path):
    with History(tmp_path / "h.sqlite") as history:
        session = history.open_stream("s", "websocket", "x", 16_000, 1, "m")
        with pytest.raises(ValueError, match="not a per-hop record"):
            history.add(session, [{"label": "rock"}])
        history.add(session, [{"hop": 3, "label": None, "top": []}])
        history.flush()
        assert history.query() == [] and history.stats()["rows_written"] == 0


def test_close_is_idempotent_and_later_rows_are_counted_not_raised(tmp_path):
    history = History(tmp_path / "h.sqlite")
    session = history.open_stream("s", "websocket", "x", 16_000, 1, "m")
    history.add(session, [record(1)])
    history.close()
    history.close()
    history.add(session, [record(2)])  # a stream that ends after the server began to stop
    history.end_stream(session)
    history.flush()
    assert history.stats()["rows_dropped"] == 1
    assert [r["hop"] for r in HistoryReader(tmp_path / "h.sqlite").query()] == [1]


def test_writes_from_one_thread_while_others_query(tmp_path):
    path = tmp_path / "h.sqlite"
    errors, seen = [], []
    with History(path, flush_s=0.01, batch_rows=50) as history:
        session = history.open_stream("s", "websocket", "x", 16_000, 1, "m")
        done = threading.Event()

        def read() -> None:
            counts = []
            try:
                while True:
                    last = done.is_set()  # then this read starts after the last flush
                    rows = history.query(stream="s")
                    assert [r["hop"] for r in rows] == list(range(len(rows)))  # whole batches, in order
                    counts.append(len(rows))
                    history.streams()
                    if last:
                        break
            except Exception as exc:  # reported below, with the thread's own traceback lost
                errors.append(exc)
            seen.append(counts)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for thread in readers:
            thread.start()
        for start in range(0, 3000, 30):
            history.add(session, [record(h) for h in range(start, start + 30)])
            time.sleep(0.001)
        history.flush()
        done.set()
        for thread in readers:
            thread.join()
    assert errors == []
    for counts in seen:
        assert counts == sorted(counts) and counts[-1] == 3000  # committed rows only ever appear
    assert any(0 < c < 3000 for counts in seen for c in counts)  # and they read while it wrote


def test_a_reader_in_a_long_read_does_not_hold_up_the_writer(tmp_path):
    path = tmp_path / "h.sqlite"
    with History(path, max_age_s=3600, purge_s=3600, flush_s=0.01) as history:
        session = history.open_stream("s", "websocket", "x", 16_000, 1, "m")
        history.add(session, [record(h, time.time() - 7200) for h in range(100)])  # for purge() below
        history.flush()
        reader = _raw(path)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM hops").fetchone()[0] == 100  # holds its snapshot
        start = time.monotonic()
        history.add(session, [record(h, time.time()) for h in range(100, 2100)])
        history.flush()
        assert history.purge() == 100  # its checkpoint cannot finish past the reader: no long wait
        assert time.monotonic() - start < 2.0
        assert reader.execute("SELECT count(*) FROM hops").fetchone()[0] == 100  # still its snapshot
        reader.execute("COMMIT")
        assert len(history.query()) == 2000


# -- crashes ----------------------------------------------------------------------------------


def _spawn(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WRITER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _integrity_ok(path: Path) -> sqlite3.Connection:
    conn = _raw(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    return conn


def test_sigkill_mid_stream_loses_no_committed_batch(tmp_path):
    """Kill a writing process at random moments, four times over the same file."""
    path, seed = tmp_path / "h.sqlite", random.randrange(10**6)
    chance = random.Random(seed)
    for round_ in range(4):
        writer = _spawn(path, "write", f"round{round_}")
        session = int(writer.stdout.readline().split()[1])
        deadline, committed = time.monotonic() + chance.uniform(0.05, 0.5), 0
        while time.monotonic() < deadline:
            committed = int(writer.stdout.readline().split()[1])
        writer.kill()
        writer.wait()
        conn = _integrity_ok(path)
        hops = _check_rows(conn, session)
        assert hops == list(range(len(hops))), f"seed {seed}: a batch is torn or missing"
        assert len(hops) >= committed > 0, f"seed {seed}: committed rows are gone"
        _counters_match(conn)
        conn.close()
    with History(path) as history:  # and it goes on
        session = history.open_stream("after", "websocket", "x", 16_000, 1, "m")
        history.add(session, [record(0)])
        history.flush()
        assert [r["hop"] for r in history.query(stream="after")] == [0]
        assert len(history.streams()) == 5


def _fill_old_rows(path: Path, rows: int) -> int:
    """A session of ``rows`` hops, two days old, written straight into the file (fast)."""
    with History(path) as history:
        session = history.open_stream("old", "websocket", "x", 16_000, 1, "m")
        history.end_stream(session)
    t0 = time.time() - 2 * 86_400
    conn = _raw(path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO hops (session, time, hop, start_s, end_s, label, confidence, top) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (session, t0 + h * 0.01, h, h * 0.5, h * 0.5 + 0.96, "rock", 0.5, '[["rock", 0.5]]')
            for h in range(rows)
        ],
    )
    conn.execute("UPDATE sessions SET hops = ?, started = ?, ended = ? WHERE id = ?", (rows, t0, t0, session))
    conn.execute("COMMIT")
    conn.close()
    return session


def test_sigkill_during_a_retention_purge_leaves_whole_chunks(tmp_path):
    path, seed, total = tmp_path / "h.sqlite", random.randrange(10**6), 120_000
    chance = random.Random(seed)
    session = _fill_old_rows(path, total)
    left, interrupted = total, 0
    for round_ in range(3):
        purger = _spawn(path, "purge")
        assert purger.stdout.readline().strip() == "deleting", purger.stderr.read()
        time.sleep(chance.uniform(0.0, 0.02 if round_ == 0 else 0.15))  # the first lands early for sure
        purger.kill()
        purger.wait()
        conn = _integrity_ok(path)
        hops = [h for (h,) in conn.execute("SELECT hop FROM hops WHERE session = ? ORDER BY hop", (session,))]
        assert hops == list(range(total - len(hops), total)), f"seed {seed}: not the oldest first"
        assert len(hops) <= left and (total - len(hops)) % CHUNK_ROWS == 0, f"seed {seed}"
        _counters_match(conn)
        conn.close()
        interrupted += 0 < len(hops) < left
        left = len(hops)
        if not left:
            break
    assert interrupted, f"seed {seed}: no kill landed inside a purge"
    with History(path, max_age_s=3600) as history:  # a new writer finishes the purge and appends
        history.purge()
        assert history.stats()["rows_purged"] == left
        fresh = history.open_stream("new", "websocket", "x", 16_000, 1, "m")
        history.add(fresh, [record(1, time.time())])
        history.flush()
        assert [s["name"] for s in history.streams()] == ["new"]  # the old one ended and is empty
        assert len(history.query()) == 1


# -- retention --------------------------------------------------------------------------------


def test_rows_older_than_max_age_are_deleted_by_the_writer(tmp_path):
    now = time.time()
    with History(tmp_path / "h.sqlite", max_age_s=600, purge_s=0.1, flush_s=0.01) as history:
        gone = history.open_stream("gone", "websocket", "x", 16_000, 1, "m")
        live = history.open_stream("live", "websocket", "x", 16_000, 1, "m")
        history.add(gone, [record(h, now - 3600) for h in range(50)])
        history.add(
            live, [record(h, now - 3600) for h in range(50)] + [record(h, now) for h in range(50, 60)]
        )
        history.end_stream(gone)
        history.flush()
        # nobody calls purge(): the writer does it on its own, every purge_s
        assert _wait_for(lambda: len(history.query()) == 10)
        assert [r["hop"] for r in history.query()] == list(range(50, 60))
        assert [(s["name"], s["hops"]) for s in history.streams()] == [("gone", 0), ("live", 10)]
        # a session is forgotten once it ended longer than max_age_s ago (and has no rows left)
        _raw(history.path).execute("UPDATE sessions SET ended = ? WHERE id = ?", (now - 601, gone))
        assert _wait_for(lambda: [s["name"] for s in history.streams()] == ["live"])
        assert history.stats()["rows_purged"] == 100


def test_the_file_is_kept_under_max_mb_and_really_shrinks(tmp_path):
    path, max_mb = tmp_path / "h.sqlite", 0.25
    limit = max_mb * 1024 * 1024
    with History(path, max_mb=max_mb, purge_s=3600, flush_s=0.01, batch_rows=500) as history:
        session = history.open_stream("s", "websocket", "x", 16_000, 1, "m")
        sizes = []
        for start in range(0, 20_000, 500):  # about 2.6 MB of rows: ten times the limit
            history.add(session, [record(h) for h in range(start, start + 500)])
            history.flush()
            sizes.append(history._retention.file_bytes())
        # purge_s is an hour: the checks come from the amount written (about 5% of the limit)
        assert _wait_for(lambda: history._retention.file_bytes() <= limit)
        assert max(sizes) < 2 * limit  # it never ran far ahead of the limit
        hops = [r["hop"] for r in history.query()]
        assert hops == list(range(20_000 - len(hops), 20_000)) and len(hops) > 1000  # the newest kept
        conn = _raw(path)
        pages, free, page_size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
        assert free < 0.1 * pages and os.path.getsize(path) <= limit  # freed pages went back to the disk
        _counters_match(conn)


# -- write failures ---------------------------------------------------------------------------


def test_a_disk_that_fills_up_drops_rows_logs_once_and_recovers(tmp_path):
    """A real write failure: RLIMIT_FSIZE makes every write past the limit fail with EFBIG, as
    a full disk does with ENOSPC, and lifting it is the disk freed again (in a child process, so
    this one's files are not limited)."""
    path = tmp_path / "h.sqlite"
    done = subprocess.run(
        [sys.executable, str(WRITER), str(path), "fsize"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    before, full, after = (json.loads(line) for line in done.stdout.splitlines())
    assert before["rows_written"] == 100 and before["rows_dropped"] == 0
    assert full["rows_dropped"] > 0 and not full["writing"] and full["last_error"]
    assert full["rows_written"] + full["rows_dropped"] == 20_100 and full["rows_pending"] == 0
    assert after["writing"] and after["rows_written"] == full["rows_written"] + 50
    assert done.stderr.count("cannot write") == 1, done.stderr  # once, not once per batch
    assert done.stderr.count("again") == 1, done.stderr
    conn = _integrity_ok(path)
    assert conn.execute("SELECT count(*) FROM hops").fetchone()[0] == after["rows_written"]
    _counters_match(conn)


def test_a_locked_file_drops_rows_and_even_open_stream_goes_on(tmp_path, monkeypatch, caplog):
    """Another process holding the write lock too long: open_stream gives a stand-in id, the rows
    meanwhile are dropped, and once the lock is gone the session and later rows are written."""
    monkeypatch.setattr(history_file, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "h.sqlite"
    caplog.set_level(logging.WARNING, logger="coaudio.serve")
    with History(path, flush_s=0.01) as history:
        other = _raw(path)
        other.execute("BEGIN IMMEDIATE")
        session = history.open_stream("s", "websocket", "x", 16_000, 1, "m")
        assert session < 0
        history.add(session, [record(h) for h in range(10)])
        history.flush()
        history.add(session, [record(h) for h in range(10, 20)])
        history.flush()
        assert history.stats()["rows_dropped"] == 20 and "locked" in history.stats()["last_error"]
        other.execute("ROLLBACK")
        history.add(session, [record(h) for h in range(20, 30)])
        history.end_stream(session)
        history.flush()
        (stream,) = history.streams()
        assert stream["id"] > 0 and stream["hops"] == 10 and stream["ended"] is not None
        assert [r["hop"] for r in history.query()] == list(range(20, 30))
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("cannot write" in m for m in warnings) == 1 and sum("again" in m for m in warnings) == 1


# -- times and CSV ----------------------------------------------------------------------------


def test_parse_time_forms():
    now = 1_764_322_800.0
    assert parse_time("1764322800") == 1_764_322_800.0
    assert parse_time("1764322800.5") == 1_764_322_800.5
    assert parse_time("90s", now) == now - 90
    assert parse_time("10m", now) == now - 600
    assert parse_time("2h", now) == now - 7200
    assert parse_time("7d", now) == now - 7 * 86_400
    assert parse_time("1.5h", now) == now - 5400
    assert parse_time("2026-11-28T10:00:00Z") == datetime(2026, 11, 28, 10, tzinfo=UTC).timestamp()
    plus_one = timezone(timedelta(hours=1))
    assert parse_time("2026-11-28T10:00:00+01:00") == datetime(2026, 11, 28, 10, tzinfo=plus_one).timestamp()
    assert parse_time("2026-11-28T10:00:00") == datetime(2026, 11, 28, 10).timestamp()  # local time
    assert parse_time("2026-11-28") == datetime(2026, 11, 28).timestamp()
    assert abs(parse_time("1m") - (time.time() - 60)) < 5


@pytest.mark.parametrize("text", ["yesterday", "", "10 parsecs", "nan", "inf", "2026-13-01", "-5m"])
def test_parse_time_says_what_it_takes(text):
    with pytest.raises(ValueError, match="cannot read .* as a time; give unix seconds .*ISO 8601.*age"):
        parse_time(text)


def test_to_csv():
    rows = [
        dict(record(2), stream="kitchen", session=1),
        dict(record(3), stream="a,b", session=2, confidence=None),
    ]
    text = to_csv(rows)
    assert text.splitlines()[0] == "stream,session,time,hop,start_s,end_s,label,confidence,top"
    back = list(csv.DictReader(text.splitlines()))
    assert back[0]["label"] == "pop, live" and back[1]["stream"] == "a,b" and back[1]["confidence"] == ""
    assert back[0]["top"] == "pop, live:0.020000;other:0.980000"
    assert float(back[0]["time"]) == record(2)["time"]
    assert to_csv([]) == "stream,session,time,hop,start_s,end_s,label,confidence,top\n"


def test_the_history_modules_do_not_import_torch():
    code = (
        "import sys\nimport coaudio.serve.history, coaudio.serve.history_query\nprint('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
