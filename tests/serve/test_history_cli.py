"""``coaudio history``: the real command in a subprocess, run from another working directory."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coaudio.serve.history import History
from tests.serve.history_writer import record
from tests.terminal import on_a_terminal

WRITER = Path(__file__).with_name("history_writer.py")
NOW = time.time()


def _coaudio(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coaudio", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    """Two streams: kitchen (hops 0-9, an hour ago, ended) and garden (hops 0-4, now, open)."""
    path = tmp_path_factory.mktemp("history") / "h.sqlite"
    with History(path) as history:
        kitchen = history.open_stream("kitchen", "websocket", "127.0.0.1", 16_000, 1, "synth")
        garden = history.open_stream("garden", "url", "http://x/live", 44_100, 2, "synth")
        history.add(kitchen, [record(h, NOW - 3600) for h in range(10)])
        history.add(garden, [record(h, NOW) for h in range(5)])
        history.end_stream(kitchen)
    return path


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_when_stdout_is_not_a_terminal(db, tmp_path):
    done = _coaudio("history", db, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    rows = _jsonl(done.stdout)
    assert [(r["stream"], r["hop"]) for r in rows] == [("kitchen", h) for h in range(10)] + [
        ("garden", h) for h in range(5)
    ]
    assert rows[3]["top"] == record(3)["top"] and rows[3]["label"] == record(3)["label"]


@pytest.mark.parametrize(
    "args,want",
    [
        (["--stream", "garden"], [("garden", h) for h in range(5)]),
        # absolute times: under a busy xdist run, tests start many minutes after NOW is taken
        (["--since", str(NOW - 600)], [("garden", h) for h in range(5)]),
        (["--until", str(NOW - 1800)], [("kitchen", h) for h in range(10)]),
        (["--since", "30d", "--until", str(NOW - 1800)], [("kitchen", h) for h in range(10)]),  # an age
        (
            ["--since", "2h", "--until", str(NOW - 3600 + 0.025)],
            [("kitchen", 0), ("kitchen", 1), ("kitchen", 2)],
        ),
        (["--limit", "2"], [("garden", 3), ("garden", 4)]),
        (["--stream", "kitchen", "--limit", "1"], [("kitchen", 9)]),
        (["--stream", "nobody"], []),
    ],
)
def test_filters(db, tmp_path, args, want):
    done = _coaudio("history", db, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [(r["stream"], r["hop"]) for r in _jsonl(done.stdout)] == want


def test_csv(db, tmp_path):
    done = _coaudio("history", db, "--format", "csv", "--stream", "kitchen", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert list(rows[0]) == [
        "stream",
        "session",
        "time",
        "hop",
        "start_s",
        "end_s",
        "label",
        "confidence",
        "top",
    ]
    assert len(rows) == 10 and rows[2]["label"] == "pop, live"  # quoted, comma and all
    assert rows[2]["top"] == "pop, live:0.020000;other:0.980000"


def test_streams(db, tmp_path):
    listed = _jsonl(_coaudio("history", db, "--streams", cwd=tmp_path).stdout)
    assert [(s["name"], s["hops"], s["ended"] is None) for s in listed] == [
        ("kitchen", 10, False),
        ("garden", 5, True),
    ]
    assert listed[1]["sample_rate"] == 44_100 and listed[1]["last_label"] == record(4)["label"]
    assert listed[0]["last_end_s"] == record(9)["end_s"] and listed[0]["last_confidence"] == 0.09
    one = _coaudio("history", db, "--streams", "--stream", "garden", "--format", "csv", cwd=tmp_path)
    (row,) = list(csv.DictReader(one.stdout.splitlines()))
    assert row["name"] == "garden" and row["ended"] == "" and row["kind"] == "url"
    table = _coaudio("history", db, "--streams", "--format", "table", cwd=tmp_path).stdout
    assert "kitchen" in table and "open" in table and "last label" in table


@pytest.mark.parametrize(
    "args,want",
    [
        (["--limit", "1"], ["garden"]),  # the newest session
        (["--limit", "5"], ["kitchen", "garden"]),
        (["--stream", "kitchen", "--limit", "1"], ["kitchen"]),
        (["--until", "1h"], []),  # both started a moment ago (the fixture's sessions start now)
        (["--since", str(NOW + 3600)], ["garden"]),  # kitchen ended before; garden is open: it goes on
        (["--since", "1h", "--until", str(NOW + 3600)], ["kitchen", "garden"]),
    ],
)
def test_streams_take_limit_since_and_until(db, tmp_path, args, want):
    done = _coaudio("history", db, "--streams", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [s["name"] for s in _jsonl(done.stdout)] == want


def _on_a_terminal(args, cwd: Path, columns: int) -> str:
    """``coaudio history ARGS`` with a real pseudo-terminal as stdout, as a user's shell has."""
    status, out, err = on_a_terminal(["history", *args], cwd, columns)
    assert status == 0, err
    return out


def test_a_table_on_a_terminal(db, tmp_path):
    text = _on_a_terminal([db, "--stream", "garden"], tmp_path, 200)
    assert "garden" in text and "pop, live" in text and "{" not in text  # a table, not JSON
    assert "other:0.98" in text  # the next of the top labels, whole on a wide terminal


@pytest.fixture(scope="module")
def long_db(tmp_path_factory) -> Path:
    """Long stream names, labels and sources: what must not widen a table past the terminal."""
    path = tmp_path_factory.mktemp("long") / "h.sqlite"
    with History(path) as history:
        url = "http://radio.example.org/streams/a/very/long/path/to/the/live/stream.mp3"
        session = history.open_stream("a-very-long-stream-name-for-the-garden", "url", url, 44_100, 2, "m")
        rows = [record(h) for h in range(12_345, 12_350)]
        for r in rows:
            r["label"] = "electronic dance music, live"
            r["top"] = [{"label": f"genre number {i}", "p": 0.1} for i in range(5)]
        history.add(session, rows)
        history.open_stream("kitchen", "websocket", "127.0.0.1:50000", 16_000, 1, "m")
    return path


@pytest.mark.parametrize("args", [[], ["--streams"]])
def test_tables_fit_80_columns(long_db, tmp_path, args):
    lines = _on_a_terminal([long_db, *args], tmp_path, 80).splitlines()
    assert lines and max(len(line) for line in lines) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    if args:
        assert "kitchen" in text and "a-very-long…" in text and "open" in text and "127.0.0.1" in text
    else:  # the time, the hop, where in the stream, the confidence: whole; names cut with an ellipsis
        (first, *_) = [line for line in lines if "12345" in line]
        assert "6173.5" in first and "0.45" in first and "electronic da…" in first
        assert re.search(r"\d\d-\d\d \d\d:\d\d:\d\d", first)


@pytest.mark.parametrize(
    "args,left_out",
    [([], "stream, hop, at s, next"), (["--streams"], "id, hops, last label, source")],
)
def test_a_narrow_terminal_leaves_columns_out_instead_of_cutting_numbers(long_db, tmp_path, args, left_out):
    """At 40 columns (the narrowest console) the fixed columns do not all fit: the least needed
    are left out, named in a caption, and what is shown is whole (times, labels, confidences)."""
    lines = _on_a_terminal([long_db, *args], tmp_path, 40).splitlines()
    assert lines and max(len(line) for line in lines) <= 40, "\n".join(lines)
    text = "\n".join(lines)
    assert "left out at this width: " + left_out in " ".join(text.split()), text
    if args:
        assert "kitchen" in text and "open" in text
    else:
        (first, *_) = [line for line in lines if "0.45" in line]
        assert re.search(r"\d\d-\d\d \d\d:\d\d:\d\d ", first) and "electronic da…" in first, first


@pytest.mark.parametrize("args", [[], ["--streams"]])
def test_a_table_into_a_file_is_never_folded_at_an_exported_width(long_db, tmp_path, args):
    """Written to a file, a table is 200 columns wide whatever COLUMNS says: shells, editors and
    pytest-xdist's workers export COLUMNS=80 where no terminal is, and a report saved to a file
    must not depend on that; on a terminal the table fits it (test_tables_fit_80_columns)."""
    command = [sys.executable, "-m", "coaudio", "history", long_db, *args, "--format", "table"]
    for columns in ("80", None):
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | (
            {"COLUMNS": columns} if columns else {}
        )
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        widths = [len(line) for line in done.stdout.splitlines()]
        assert done.returncode == 0 and widths, done.stderr
        assert 80 < max(widths) <= 200, done.stdout


def test_a_missing_file_is_an_error_and_stays_missing(tmp_path):
    missing = tmp_path / "no" / "h.sqlite"
    done = _coaudio("history", missing, cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no history yet" in done.stderr and "coaudio serve" in done.stderr
    assert str(missing) in done.stderr and "--db" in done.stderr
    assert not (tmp_path / "no").exists()


def test_the_default_file_follows_the_environment(db, tmp_path):
    done = _coaudio("history", "--stream", "garden", cwd=tmp_path, env={"COAUDIO_HISTORY": str(db)})
    assert done.returncode == 0 and len(_jsonl(done.stdout)) == 5
    home = tmp_path / "home"
    env = {"COAUDIO_HISTORY": "", "XDG_DATA_HOME": "", "HOME": str(home)}
    missing = _coaudio("history", cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "the default" in missing.stderr and "COAUDIO_HISTORY" in missing.stderr
    assert str(home / ".local" / "share" / "coaudio" / "history.sqlite") in missing.stderr
    assert not home.exists()  # the reader creates nothing, not even the folder


@pytest.mark.parametrize(
    "args,words",
    [
        (["--since", "yesterday"], "cannot read 'yesterday' as a time"),
        (["--until", "10 parsecs"], "--until"),
        (["--since", "1m", "--until", "1h"], "is not before --until"),
        (["--streams", "--since", "1m", "--until", "1h"], "is not before --until"),
        (["--streams", "--limit", "0"], "--limit"),
        (["--limit", "0"], "--limit"),
        (["--format", "xml"], "--format"),
    ],
)
def test_usage_errors_exit_2_in_one_line(db, tmp_path, args, words):
    done = _coaudio("history", db, *args, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and words in done.stderr


def test_a_file_that_is_not_a_history_is_named(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("not a database\n" * 50)
    done = _coaudio("history", other, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert str(other) in done.stderr and "not a coaudio history" in done.stderr


def test_reads_while_a_server_writes(tmp_path):
    """A live writer in another process: the reader sees whole batches, never a torn one."""
    path, log = tmp_path / "live.sqlite", tmp_path / "writer.log"
    with open(log, "w") as out:
        writer = subprocess.Popen([sys.executable, str(WRITER), str(path), "write", "live"], stdout=out)
    try:
        deadline = time.monotonic() + 30
        while "committed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        for _ in range(3):
            done = _coaudio("history", path, "--stream", "live", "--limit", "300", cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            hops = [r["hop"] for r in _jsonl(done.stdout)]
            assert hops and hops == list(range(hops[0], hops[0] + len(hops)))
    finally:
        writer.kill()
        writer.wait()


def test_reading_a_copied_file_leaves_no_wal_or_shm_next_to_it(db, tmp_path):
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(db.read_bytes())  # as cp makes it: no -wal, no -shm
    before = copy.read_bytes()
    for args in ([], ["--streams"], ["--format", "csv", "--limit", "2"]):
        done = _coaudio("history", copy, *args, cwd=tmp_path)
        assert done.returncode == 0 and done.stdout, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.sqlite"] and copy.read_bytes() == before


def test_a_reader_that_stops_early_ends_quietly(db, tmp_path):
    command = (
        f"{sys.executable} -m coaudio history {db} --format csv | head -1; echo status ${{PIPESTATUS[0]}}"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("stream,") and lines[-1] in ("status 0", "status 141")
    assert done.stderr == ""


def test_the_command_never_imports_torch(db):
    code = (
        "import sys\nfrom coaudio_cli.main import run\n"
        f"status = run(['history', {str(db)!r}, '--limit', '1'])\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', status)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH 0", done.stdout[-500:] + done.stderr


def _writing(path: Path, name: str, log: Path) -> subprocess.Popen:
    """history_writer.py writing session ``name`` into ``path``, once its first batch is in."""
    with open(log, "w") as out:
        writer = subprocess.Popen([sys.executable, str(WRITER), str(path), "write", name], stdout=out)
    deadline = time.monotonic() + 30
    while "committed" not in log.read_text():
        assert time.monotonic() < deadline and writer.poll() is None, log.read_text()
        time.sleep(0.02)
    return writer


def test_streams_tell_an_open_session_whose_server_died(tmp_path):
    """A SIGKILLed server's session stays open in the file until a server opens it again: the
    listing says that its writer is gone (table: "gone"; JSON lines and CSV: writer_gone),
    unlike a live server's session ("open")."""
    path = tmp_path / "h.sqlite"
    live = _writing(
        path, "live", tmp_path / "live.log"
    )  # first: a writer that opens the file closes dead ones'
    try:
        dead = _writing(path, "dead", tmp_path / "dead.log")
        dead.kill()
        dead.wait()
        listed = _jsonl(_coaudio("history", path, "--streams", cwd=tmp_path).stdout)
        csv_text = _coaudio("history", path, "--streams", "--format", "csv", cwd=tmp_path).stdout
        table = _coaudio("history", path, "--streams", "--format", "table", cwd=tmp_path).stdout
    finally:
        live.kill()
        live.wait()
    assert [(s["name"], s["ended"], s["writer_gone"]) for s in listed] == [
        ("live", None, False),
        ("dead", None, True),
    ]
    rows = list(csv.DictReader(csv_text.splitlines()))
    assert [(r["name"], r["writer_gone"]) for r in rows] == [("live", "false"), ("dead", "true")]
    lines = {
        line.split()[1]: line for line in table.splitlines() if line.split()[1:2] in (["live"], ["dead"])
    }
    assert " open " in lines["live"] and " gone " in lines["dead"] and " open " not in lines["dead"], table


def test_the_suggested_serve_command_quotes_the_path_for_the_shell(tmp_path):
    """A name with a space (and rich markup) is suggested quoted, so the command pastes whole."""
    done = _coaudio("history", "h [bold]x.sqlite", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "h [bold]x.sqlite does not exist" in done.stderr
    assert "(coaudio serve CHECKPOINT --db 'h [bold]x.sqlite')" in done.stderr, done.stderr
    assert not (tmp_path / "h [bold]x.sqlite").exists()
