"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch stays unimported for callers that only write text
    from torch import Tensor


def save_safetensors_atomically(tensors: dict[str, Tensor], path: Path,
                                metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` via a hidden ``.<name>.*.partial`` file in the same folder
    and one atomic rename: an interrupted write (Ctrl-C, SIGKILL, full disk) leaves either the
    previous file or none, never a truncated one, and no temporary file unless killed."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomically(path: Path, text: str) -> None:
    """The whole text or nothing: a hidden temporary file in the same folder, fsynced, then
    one rename (a reader never sees a half-written file; a full disk leaves the old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
