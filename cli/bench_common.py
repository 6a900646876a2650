"""What the ``coaudio bench`` commands share: the ``--json``/``--quick`` options, writing the
JSON document, and a description of the machine."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console


def writable_json(path: Optional[str]) -> Optional[str]:
    """``--json PATH``, checked before the benchmark runs (a full one takes minutes): its folder
    exists and is writable, and PATH is not a folder."""
    if path is None or path == "-":
        return path
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise typer.BadParameter(f"{path} is a folder: give a file name, e.g. {target / 'bench.json'}")
    if not folder.is_dir():
        raise typer.BadParameter(f"{path}: the folder {folder} does not exist")
    if target.exists() and not os.access(target, os.W_OK):
        raise typer.BadParameter(f"{path}: not writable")
    if not target.exists() and not os.access(folder, os.W_OK):
        raise typer.BadParameter(f"{path}: the folder {folder} is not writable")
    return path


def emit_json(document: dict, json_out: Optional[str], err: Console) -> bool:
    """Write the document where ``--json`` asks; True when it went to stdout (then no table)."""
    text = json.dumps(document, indent=2) + "\n"
    if json_out == "-":
        sys.stdout.write(text)
        return True
    if json_out:
        try:
            Path(json_out).write_text(text)
        except OSError as exc:  # checked before the benchmark, but the disk may have filled since
            from coaudio_cli.errors import fail

            fail(f"--json {json_out}: cannot write it ({exc.strerror or exc})")
        err.print(f"wrote {json_out}")
    return False


def machine() -> dict:
    import torch

    return {
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


Json = Annotated[
    Optional[str],
    typer.Option("--json", callback=writable_json, help="Write a JSON document to this file ('-' = stdout)."),
]
Quick = Annotated[bool, typer.Option("--quick", help="A smaller, faster version of the benchmark.")]
Threads = Annotated[int, typer.Option(min=1, help="Intra-op threads (torch.set_num_threads).")]
Blocks = Annotated[str, typer.Option(help="Encoder depths to time, comma-separated.")]
