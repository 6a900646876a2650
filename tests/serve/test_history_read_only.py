"""A history file that cannot be written is refused when the server starts, with one line that
names it and says why, rather than accepted and every row dropped later. Made read-only for
real with ``chattr +i`` (mode 444 does not stop root): SQLite then opens the file read-only
without a word, and ``BEGIN IMMEDIATE`` succeeds on that connection; only a write tells.

A writable file in a folder that cannot be written behaves as before: refused when SQLite
cannot make its ``-wal`` there, written when a killed writer left it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.online.helpers import make_checkpoint
from tests.serve.helpers import coaudio_serve_exit
from tests.serve.history_writer import record

CHATTR = shutil.which("chattr")


@contextmanager
def immutable(path: Path):
    """``path`` made immutable (``chattr +i``) for the block, the flag cleared after it; the
    test is skipped where that is not permitted (not root, tmpfs, no chattr)."""
    if CHATTR is None or shutil.which("lsattr") is None:
        pytest.skip("chattr/lsattr are not installed (e2fsprogs)")
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root (CAP_LINUX_IMMUTABLE)")
    done = subprocess.run([CHATTR, "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not permitted on this filesystem: {done.stderr.strip()}")
    try:
        flags = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True, check=True)
        assert "i" in flags.stdout.split()[0], flags.stdout
        yield path
    finally:
        subprocess.run([CHATTR, "-i", str(path)], check=True)


def _history_with_a_session(path: Path) -> None:
    from coaudio.serve.history import History

    with History(path) as history:
        history.add(history.open_stream("a", "ws", "x", 16_000, 1, "m"), [record(h) for h in range(3)])


def test_an_immutable_file_is_refused_at_once_naming_it(tmp_path):
    from coaudio.serve.history import History, HistoryError

    path = tmp_path / "h.sqlite"
    _history_with_a_session(path)
    before = path.read_bytes()
    with immutable(path):
        with pytest.raises(HistoryError) as caught:
            History(path)
    message = str(caught.value)
    assert message.startswith(f"cannot write the history {path}: ") and "\n" not in message
    assert "readonly database" in message and "Operation not permitted" in message
    assert path.read_bytes() == before


def test_serve_refuses_an_immutable_db_with_one_error_line(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "m.safetensors", hop_frames=20, window=6)
    path = tmp_path / "h.sqlite"
    _history_with_a_session(path)
    with immutable(path):
        code, stderr = coaudio_serve_exit(checkpoint, "--db", path, "--port", "0")
    assert code == 1 and "Traceback" not in stderr, stderr
    assert "history in" not in stderr and "coaudio serve: http" not in stderr  # it never served
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0] and "Operation not permitted" in errors[0], stderr


def test_a_writable_file_in_an_immutable_folder_is_refused_without_a_wal(tmp_path):
    from coaudio.serve.history import History, HistoryError

    folder = tmp_path / "ro"
    folder.mkdir()
    _history_with_a_session(folder / "h.sqlite")  # closed cleanly: no -wal is left
    with immutable(folder):
        with pytest.raises(HistoryError, match=f"cannot open the history {folder / 'h.sqlite'}: "):
            History(folder / "h.sqlite")


def test_a_writable_file_in_an_immutable_folder_is_written_through_its_wal(tmp_path):
    """The -wal and -shm files exist (here: another writer holds them open, as a killed one
    leaves them): SQLite needs to create nothing, and the file takes rows as before."""
    from coaudio.serve.history import History, HistoryReader

    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "h.sqlite"
    _history_with_a_session(path)
    with History(path) as first:  # holds the -wal and -shm
        with immutable(folder):
            with History(path) as second:
                second.add(second.open_stream("b", "ws", "y", 16_000, 1, "m"), [record(h) for h in range(5)])
            stats = second.stats()
    assert (stats["rows_written"], stats["rows_dropped"], stats["last_error"]) == (5, 0, None)
    assert first.stats()["last_error"] is None
    with HistoryReader(path) as reader:
        assert len(reader.query(stream="b")) == 5 and len(reader.query(stream="a")) == 3
