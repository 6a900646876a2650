"""A history file that cannot be written is refused when the server starts, with one line that
names it and says why, rather than accepted and every row dropped later. Made read-only for
real with ``chattr +i`` (mode 444 does not stop root): SQLite then opens the file read-only
without a word, and ``BEGIN IMMEDIATE`` succeeds on that connection; only a write tells.

A writable file in a folder that cannot be written behaves as before: refused when SQLite
cannot make its ``-wal`` there (the message says that the folder is not writable, and why),
written when a killed writer left it.

A refused start leaves the folder as it was: SQLite makes an empty ``-wal`` and a ``-shm`` as it
opens a WAL file, and does not remove them when it opened the file read-only; the refusal
removes those it made, never a pair that was there before or that a connection uses.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
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
    assert sorted(os.listdir(tmp_path)) == ["h.sqlite", "m.safetensors"]  # no -wal or -shm left


def test_a_writable_file_in_an_immutable_folder_is_refused_without_a_wal(tmp_path):
    from coaudio.serve.history import History, HistoryError

    folder = tmp_path / "ro"
    folder.mkdir()
    _history_with_a_session(folder / "h.sqlite")  # closed cleanly: no -wal is left
    with immutable(folder):
        with pytest.raises(HistoryError, match=f"cannot open the history {folder / 'h.sqlite'}: ") as caught:
            History(folder / "h.sqlite")
        assert os.listdir(folder) == ["h.sqlite"]  # no -wal, and no file left by the probe
    message = str(caught.value)
    assert "\n" not in message and message.endswith(
        f"unable to open database file (the folder {folder} is not writable: Operation not permitted; "
        "SQLite keeps its -wal and -shm files beside the database)"
    ), message


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


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("content", ["empty", "history"])
def test_a_refused_immutable_file_leaves_the_folder_as_it_was(tmp_path, content):
    from coaudio.serve.history import History, HistoryError

    path = tmp_path / "full.sqlite"
    if content == "empty":
        path.touch()
    else:
        _history_with_a_session(path)
    before = _listing(tmp_path)
    with immutable(path):
        with pytest.raises(HistoryError, match="Operation not permitted"):
            History(path)
        assert _listing(tmp_path) == before == ["full.sqlite"]


def test_a_refusal_leaves_a_pair_that_was_there_before(tmp_path):
    """An empty -wal and a -shm that no one holds (as a plain read-only SQLite reader leaves
    them): not this call's to remove."""
    from coaudio.serve.history import History, HistoryError

    path = tmp_path / "full.sqlite"
    _history_with_a_session(path)
    with immutable(path):
        reader = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        assert reader.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
        reader.close()
        pair = {name: os.stat(tmp_path / name).st_ino for name in ("full.sqlite-wal", "full.sqlite-shm")}
        assert os.path.getsize(tmp_path / "full.sqlite-wal") == 0
        with pytest.raises(HistoryError, match="Operation not permitted"):
            History(path)
        assert {name: os.stat(tmp_path / name).st_ino for name in pair} == pair
        assert _listing(tmp_path) == ["full.sqlite", "full.sqlite-shm", "full.sqlite-wal"]


def test_a_refusal_leaves_a_live_writers_pair_and_it_goes_on_writing(tmp_path):
    from coaudio.serve.history import History, HistoryError, HistoryReader

    path = tmp_path / "full.sqlite"
    _history_with_a_session(path)
    with History(path) as first:
        first.add(first.open_stream("b", "ws", "y", 16_000, 1, "m"), [record(h) for h in range(2)])
        pair = {name: os.stat(tmp_path / name).st_ino for name in ("full.sqlite-wal", "full.sqlite-shm")}
        with immutable(path):
            with pytest.raises(HistoryError, match="Operation not permitted"):
                History(path)
            assert {name: os.stat(tmp_path / name).st_ino for name in pair} == pair
        first.add(first.open_stream("c", "ws", "z", 16_000, 1, "m"), [record(h) for h in range(4)])
    stats = first.stats()  # closed: every row flushed
    assert (stats["rows_written"], stats["rows_dropped"], stats["last_error"]) == (6, 0, None)
    with HistoryReader(path) as reader:
        assert [len(reader.query(stream=s)) for s in "abc"] == [3, 2, 4]


def test_files_made_are_removed_only_when_unused_and_empty(tmp_path):
    """The rule of the clean-up itself: a -shm that a connection holds (a reader that opened the
    file meanwhile) stays, and so does a -wal with frames in it (a copy of a live writer's)."""
    from coaudio.serve.history import History
    from coaudio.serve.history_file import _remove_made

    path = tmp_path / "h.sqlite"
    _history_with_a_session(path)
    reader = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)  # makes the pair, keeps it
    try:
        assert reader.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
        _remove_made(path, ["-wal", "-shm"])
        assert _listing(tmp_path) == ["h.sqlite", "h.sqlite-shm", "h.sqlite-wal"]
    finally:
        reader.close()
    _remove_made(path, ["-wal", "-shm"])
    assert _listing(tmp_path) == ["h.sqlite"]

    copy = tmp_path / "copy"
    copy.mkdir()
    with History(path) as history:
        history.add(history.open_stream("b", "ws", "y", 16_000, 1, "m"), [record(h) for h in range(2)])
        for suffix in ("", "-wal", "-shm"):
            shutil.copyfile(f"{path}{suffix}", copy / f"h.sqlite{suffix}")
    assert os.path.getsize(copy / "h.sqlite-wal") > 0
    _remove_made(copy / "h.sqlite", ["-wal", "-shm"])
    assert _listing(copy) == ["h.sqlite", "h.sqlite-shm", "h.sqlite-wal"]


@pytest.mark.parametrize("content", ["none", "empty"])
def test_a_new_or_empty_file_in_an_immutable_folder_says_why(tmp_path, content):
    from coaudio.serve.history import History, HistoryError

    folder = tmp_path / "imm"
    folder.mkdir()
    path = folder / "full.sqlite"
    if content == "empty":
        path.touch()
    before = _listing(folder)
    with immutable(folder):
        with pytest.raises(HistoryError) as caught:
            History(path)
        assert _listing(folder) == before
    verb = "open" if content == "none" else "write"
    needs = {
        "none": "the file cannot be created there",
        "empty": "SQLite keeps its -wal and -shm files beside the database",
    }[content]
    assert str(caught.value) == (
        f"cannot {verb} the history {path}: unable to open database file "
        f"(the folder {folder} is not writable: Operation not permitted; {needs})"
    )


def test_serve_in_an_immutable_folder_says_why_in_one_line(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "m.safetensors", hop_frames=20, window=6)
    folder = tmp_path / "imm"
    folder.mkdir()
    _history_with_a_session(folder / "full.sqlite")
    with immutable(folder):
        code, stderr = coaudio_serve_exit(checkpoint, "--db", folder / "full.sqlite", "--port", "0")
    assert code == 1 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert f"the folder {folder} is not writable: Operation not permitted; SQLite keeps" in errors[0], stderr


@contextmanager
def read_only_mount(source: Path, target: Path):
    """``source`` mounted read-only at ``target`` (``mount -o bind,ro``) for the block; skipped
    where that is not permitted (not root, no mount, a container without CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mount -o bind,ro needs root and mount(8)")
    target.mkdir()
    done = subprocess.run(
        ["mount", "-o", "bind,ro", str(source), str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mount -o bind,ro is not permitted here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=True)  # busy: detach it anyway
            pytest.fail(f"{target} was still busy when unmounted: a connection was left open")


@pytest.mark.parametrize("name", ["full.sqlite", "new.sqlite"])
def test_a_file_on_a_read_only_mount_says_read_only_file_system(tmp_path, name):
    from coaudio.serve.history import History, HistoryError

    source = tmp_path / "src"
    source.mkdir()
    _history_with_a_session(source / "full.sqlite")
    with read_only_mount(source, tmp_path / "ro") as folder:
        with pytest.raises(HistoryError) as caught:
            History(folder / name)
        assert _listing(folder) == ["full.sqlite"]
    message = str(caught.value)
    assert message.startswith(f"cannot open the history {folder / name}: unable to open database file ")
    assert f"(the folder {folder} is not writable: Read-only file system; " in message and "\n" not in message
