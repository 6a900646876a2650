"""A command run the way a user's shell runs it: a real pseudo-terminal as its stdout."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path


def on_a_terminal(args, cwd: Path, columns: str | int | None) -> tuple[int, str, str]:
    """``coaudio ARGS`` with a pseudo-terminal as stdout and COLUMNS as given (None: unset):
    (status, stdout without colours or cursor codes, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "coaudio", *map(str, args)],
        stdout=follower,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env | ({"COLUMNS": str(columns)} if columns is not None else {}),
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other end closed (Linux says EIO)
                break
            if not chunk:
                break
            chunks.append(chunk)
        err = process.stderr.read().decode()
        status = process.wait(timeout=120)
    os.close(leader)
    out = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode()).replace("\r\n", "\n")
    return status, out, err
