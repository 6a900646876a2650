"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
