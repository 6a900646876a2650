"""SHA-256 digests of files: the identity of weight files and downloads.

:func:`file_digest` is computed once per process for each (path, size, mtime): the feature
cache needs a weight file's identity for every lookup, and the model store hashes every
installed file before it counts as present (VGGish's weights are 289 MB).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's contents, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """:func:`sha256_of`, cached per process for the file's current (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    return _digest_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def forget() -> None:
    """Drop the cached digests (what a new process would start with)."""
    _digest_of.cache_clear()
