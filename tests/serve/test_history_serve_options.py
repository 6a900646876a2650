"""``coaudio serve``'s history options as a user gives them: retention limits that make no
sense, --db relative to the folder it runs in, what --help and the banner say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.online.helpers import make_checkpoint
from tests.serve.helpers import coaudio_serve_exit, running_server


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("opts") / "m.safetensors", hop_frames=20, window=6)


@pytest.mark.parametrize(
    "args,option,words",
    [
        (["--keep-mb", "inf"], "--keep-mb", "at least 0.1, got inf"),
        (["--keep-mb", "nan"], "--keep-mb", "got nan"),
        (["--keep-mb", "0.01"], "--keep-mb", "at least 0.1"),
        (["--keep-days", "inf"], "--keep-days", "more than 0, got inf"),
        (["--keep-days", "nan"], "--keep-days", "got nan"),
        (["--keep-days", "0"], "--keep-days", "more than 0"),  # would delete the whole history
        (["--keep-days", "-1"], "--keep-days", "more than 0"),
        (["--no-db", "--keep-days", "3"], "--keep-days", "--no-db keeps none"),
        (["--no-db", "--keep-mb", "5", "--keep-days", "3"], "--keep-mb", "--no-db keeps none"),
    ],
)
def test_retention_limits_that_make_no_sense_are_usage_errors(checkpoint, tmp_path, args, option, words):
    db = [] if "--no-db" in args else ["--db", tmp_path / "h.sqlite"]
    code, stderr = coaudio_serve_exit(checkpoint, *db, *args)
    assert code == 2 and "Traceback" not in stderr and stderr.count("\n") == 1
    assert option in stderr and words in stderr
    assert not (tmp_path / "h.sqlite").exists()  # refused before anything was created


def test_help_says_where_the_history_lives_and_what_retention_does():
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    text = " ".join(done.stdout.replace("│", " ").split())
    assert "$COAUDIO_HISTORY" in text and "$XDG_DATA_HOME/coaudio/history.sqlite" in text
    assert "~/.local/share/coaudio/history.sqlite" in text
    assert "more than 0" in text and "80% of it" in text


def test_a_relative_db_is_shown_absolute_and_the_token_is_hinted_not_printed(checkpoint, tmp_path):
    env = {"COAUDIO_TOKEN": "s3cret-token-value"}
    with running_server(checkpoint, "--db", "sub/h.sqlite", cwd=tmp_path, env=env) as server:
        url = server.url
        deadline = time.monotonic() + 10
        while "YOUR_TOKEN" not in server.stderr and time.monotonic() < deadline:
            time.sleep(0.05)  # the banner's line after the address may still be in the pipe
    banner = server.stderr
    assert (
        f"history in {tmp_path / 'sub' / 'h.sqlite'}" in banner and (tmp_path / "sub" / "h.sqlite").exists()
    )
    assert f"open {url}?token=YOUR_TOKEN" in banner and "s3cret-token-value" not in banner
    assert re.search(r"\(\d+ labels?, ", banner)
