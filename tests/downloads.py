"""Files from the real world that some tests need, downloaded once and kept between sessions.

The musicnn 0.1.0 wheel (29 MB, from PyPI, by pip's own download) carries the pretrained musicnn
weights. It is kept in ``$COAUDIO_TEST_DOWNLOADS`` (default ``~/.cache/coaudio-test-downloads``)
and checked against its SHA-256 before every use. Without a network and without a kept copy the
tests that need it are skipped, saying why.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

MUSICNN_WHEEL = "musicnn-0.1.0-py3-none-any.whl"
MUSICNN_WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"


def downloads_dir() -> Path:
    default = Path.home() / ".cache" / "coaudio-test-downloads"
    return Path(os.environ.get("COAUDIO_TEST_DOWNLOADS", default))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def musicnn_wheel() -> Path:
    """The real musicnn 0.1.0 wheel, verified; skips the calling test when it cannot be had.
    Test workers (pytest -n 2) take a lock, and the wheel appears by one rename, so no worker
    ever reads another's half-downloaded file."""
    import fcntl
    import tempfile

    folder = downloads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / MUSICNN_WHEEL
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if wheel.is_file() and _sha256(wheel) == MUSICNN_WHEEL_SHA256:
            return wheel
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
            command += ["--dest", tmp, "musicnn==0.1.0"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            got = Path(tmp) / MUSICNN_WHEEL
            if done.returncode != 0 or not got.is_file():
                pytest.skip(
                    f"the musicnn wheel could not be downloaded from PyPI: {done.stderr.strip()[-300:]}"
                )
            if _sha256(got) != MUSICNN_WHEEL_SHA256:
                pytest.fail(f"{MUSICNN_WHEEL}: downloaded file does not match its known SHA-256")
            os.replace(got, wheel)
    return wheel
