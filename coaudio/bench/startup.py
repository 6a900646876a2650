"""How long a command takes to answer when it has no real work: ``--help``, a typo.

Each command line runs as a fresh process (the installed ``coaudio`` script when it is on
PATH, else ``python -m coaudio``), several times; the median wall time is reported, next to
``python -c "import torch"`` for scale: no listed command may import torch.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ["--help"],
    ["--version"],
    ["stream", "--help"],
    ["train", "folder", "--help"],
    ["trian"],
    ["recipes"],
)


def _program() -> list[str]:
    script = shutil.which("coaudio")
    return [script] if script else [sys.executable, "-m", "coaudio"]


def _seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, timeout=120)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(repeats: int = 5) -> dict:
    program = _program()
    rows = [
        {"command": " ".join(["coaudio", *args]), "seconds": _seconds(program + args, repeats)}
        for args in COMMANDS
    ]
    torch_s = _seconds([sys.executable, "-c", "import torch"], repeats)
    python_s = _seconds([sys.executable, "-c", "pass"], repeats)
    return {
        "program": " ".join(program),
        "repeats": repeats,
        "rows": rows,
        "import_torch_s": torch_s,
        "python_s": python_s,
    }
