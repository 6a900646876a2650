"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch stays unimported for callers that only write text
    from torch import Tensor


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the umask. mkstemp makes its
    files 0o600, which would leave runs and results unreadable to anyone else."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _temporary(path: Path) -> str:
    """A hidden ``.<name>.*.partial`` file beside ``path``, with the usual permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.fchmod(fd, _file_mode())
    os.close(fd)
    return tmp


def save_safetensors_atomically(
    tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` to ``path`` via a hidden ``.<name>.*.partial`` file in the same folder
    and one atomic rename: an interrupted write (Ctrl-C, SIGKILL, full disk) leaves either the
    previous file or none, never a truncated one, and no temporary file unless killed."""
    from safetensors.torch import save_file

    tmp = _temporary(path)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, _file_mode())  # save_file may make a new file: set the mode on what it wrote
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomically(path: Path, text: str) -> None:
    """The whole text or nothing: a hidden temporary file in the same folder, fsynced, then
    one rename (a reader never sees a half-written file; a full disk leaves the old one)."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
