"""Tables on a terminal fit it, with a real pseudo-terminal as stdout (as a user's shell has):
``coaudio classify``'s table in 80 columns with every number whole and every path whole (folded,
never cut); into a file or pipe it stays PIPE_WIDTH wide whatever COLUMNS says; and a width
from the environment too small to be one (COLUMNS=0, 10) still shows every row, and every
error message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from coaudio.serve.history import History
from tests.online.helpers import make_checkpoint, tone_mix
from tests.serve.history_writer import record
from tests.terminal import on_a_terminal

# long enough that an 80-column table must fold them; brackets are text, not markup
NAMES = ["x [bold]y.wav", "a[red]c.wav", "an-unusually-long-file-name-for-a-song-of-the-drone-genre.wav"]
GAP = 3  # between two cells of a table: padding, the (blank) rule, padding


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("widths")
    make_checkpoint(root / "model.safetensors", hop_frames=20, window=6)
    music = root / "music" / "a-folder-with-a-long-name" / "and-another-one-inside-it"
    music.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        soundfile.write(music / name, tone_mix(2.0, 16_000, seed=i), 16_000)
    (music / "broken.wav").write_bytes(b"not riff at all" * 50)  # an error message to fold too
    return root


def _paths(library: Path) -> list[str]:
    return sorted(str(p) for p in (library / "music").rglob("*.wav"))


def _classify(library: Path, *args) -> list:
    return ["classify", library / "model.safetensors", library / "music", "--jobs", 1, "-q",
            "--journal", library / "journal", *args]  # fmt: skip


def _column(lines: list[str], header: str, name: str, after: str | None) -> str:
    """The text of column ``name`` (from its header to the next, ``after``) of the rows,
    joined without spaces: a folded cell comes back whole."""
    start = header.index(name)
    end = header.index(after) - GAP if after else None
    return "".join(line[start:end].replace(" ", "") for line in lines)


def test_a_classify_table_fits_80_columns_with_numbers_and_paths_whole(library, tmp_path):
    status, out, err = on_a_terminal(_classify(library), tmp_path, "80")
    assert status == 1, err  # broken.wav
    lines = out.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, out
    header, rule, *rows = lines
    assert header.split() == ["path", "status", "duration_s", "hops", "label", "confidence"]
    assert set(rule) == {"─"}
    body = rows[: next(i for i, line in enumerate(rows) if line.startswith("left out"))]
    caption = " ".join(" ".join(rows[len(body) :]).split())
    assert caption == "left out at this width: top, error (--format csv or jsonl has every column)"
    folded = _column(body, header, "path", "status")  # a line may end at a space in a name
    assert folded == "".join(_paths(library)).replace(" ", ""), out  # folded, never cut
    ok = [line for line in body if " ok " in line]
    assert len(ok) == len(NAMES)
    for line in ok:  # duration, hops and confidence whole, on the line of the path's start
        assert re.search(r" ok +2\.0 +\d+ +\w+ +0\.\d{6}$", line), line
    assert re.search(r" failed +0\.0 +0$", next(line for line in body if " failed " in line))
    assert "failed " in err and "broken.wav" in err  # the error left out of the table is on stderr


def test_a_wider_terminal_shows_the_top_classes_and_the_error(library, tmp_path):
    folder = next(p.parent for p in (library / "music").rglob("*.wav"))
    args = ["classify", library / "model.safetensors", ".", "--top-k", 2, "-q", "--journal", tmp_path / "j"]
    status, out, err = on_a_terminal(args, folder, "200")  # short paths: x [bold]y.wav
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 200, out
    header, _, *body = lines
    assert header.split() == ["path", "status", "duration_s", "hops", "label", "confidence", "top", "error"]
    assert "left out" not in out
    ok = [line for line in body if " ok " in line]
    assert sorted(line.split("   ")[0] for line in ok) == sorted(NAMES), out
    for line in ok:  # each on one line, the two top classes whole
        assert re.search(r" 0\.\d{6} +\w+:0\.\d{6} \w+:0\.\d{6}$", line), line
    assert "Format not recognised" in " ".join(" ".join(lines).split())


def test_a_table_into_a_file_or_pipe_is_200_wide_whatever_columns_says(library, tmp_path):
    for columns in ("80", None):
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | (
            {"COLUMNS": columns} if columns else {}
        )
        done = subprocess.run(
            [sys.executable, "-m", "coaudio", *map(str, _classify(library, "--format", "table"))],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
        widths = [len(line) for line in done.stdout.splitlines()]
        assert done.returncode == 1 and widths, done.stderr
        assert 80 < max(widths) <= 200, done.stdout
        header, _, *body = done.stdout.splitlines()
        assert "error" in header.split() and "left out" not in done.stdout
        assert _column(body, header, "path", "status") == "".join(_paths(library)).replace(" ", "")


@pytest.mark.parametrize("columns", ["0", "10"])
def test_a_classify_table_keeps_its_rows_at_a_nonsensical_width(library, tmp_path, columns):
    status, out, err = on_a_terminal(_classify(library), tmp_path, columns)
    assert status == 1 and "internal error" not in err, err
    assert out.count(" ok ") == len(NAMES), out
    assert "3 of 4 files classified" in err


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("history") / "h.sqlite"
    with History(path) as h:
        session = h.open_stream("kitchen", "websocket", "127.0.0.1", 16_000, 1, "m")
        h.add(session, [record(hop) for hop in range(3)])
        h.end_stream(session)
    return path


@pytest.mark.parametrize("columns", ["0", "1", "5", "10"])
def test_a_history_table_keeps_its_rows_at_a_nonsensical_width(history, tmp_path, columns):
    status, out, err = on_a_terminal(["history", history, "--format", "table"], tmp_path, columns)
    assert status == 0, err
    rows = [line for line in out.splitlines() if re.match(r"\d\d-\d\d \d\d:\d\d:\d\d ", line)]
    assert len(rows) == 3, out  # (at 40 columns the stream is left out: the caption says so)
    streams = on_a_terminal(["history", history, "--streams", "--format", "table"], tmp_path, columns)
    assert streams[0] == 0 and "kit" in streams[1], streams


def test_an_error_is_printed_at_columns_0(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "0")
    done = cli("classify", tmp_path / "missing.safetensors", tmp_path)
    assert done.status == 1 and done.err == f"error: {tmp_path / 'missing.safetensors'}: no such checkpoint\n"


def test_the_consoles_are_never_narrower_than_the_minimum(monkeypatch):
    from coaudio_cli.console import MIN_WIDTH, err_console, out_console

    for columns in ("0", "1", "39"):
        monkeypatch.setenv("COLUMNS", columns)
        assert err_console().width == MIN_WIDTH
        assert out_console().width == 200  # not a terminal: the file width
    monkeypatch.setenv("COLUMNS", "120")
    assert err_console().width == 120
