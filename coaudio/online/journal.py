"""The resume journal of ``coaudio classify``: append-only, one JSON line per finished file.

Layout: ``<root>/<fingerprint>/rank-<r>.jsonl``. The fingerprint covers the model (weights,
labels, front end) and every setting that changes results, so a journal is only ever resumed
by a run that would write the same results. Each record is one ``write`` of a complete line
followed by ``fsync``; a line torn by a kill is cut off when the file is next opened, so a
record is either entirely there or not at all. Under torchrun every rank appends to its own
file; merging reads them all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def fingerprint(model_fingerprint: str, settings: dict) -> str:
    text = json.dumps({"model": model_fingerprint, "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Journal:
    def __init__(self, root: Path, fingerprint: str, rank: int = 0) -> None:
        self.folder = Path(root) / fingerprint
        self.part = self.folder / f"rank-{rank}.jsonl"
        self._fd: int | None = None

    def reset(self) -> None:
        """Forget earlier records of this fingerprint (a run without --resume)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def records(self) -> dict[str, dict]:
        """Complete records of every rank's part, by file key (the last one wins)."""
        found: dict[str, dict] = {}
        for part in sorted(self.folder.glob("rank-*.jsonl")):
            for line in part.read_bytes().split(b"\n"):
                try:
                    record = json.loads(line)
                except ValueError:  # empty, or torn by a kill
                    continue
                found[record["key"]] = record
        return found

    def append(self, key: str, result: dict) -> None:
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._drop_torn_tail()
            self._fd = os.open(self.part, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = (json.dumps({"key": key, "result": result}) + "\n").encode()
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"{self.part}: short write ({written} of {len(line)} bytes); disk full?")
        os.fsync(self._fd)

    def _drop_torn_tail(self) -> None:
        if not self.part.exists():
            return
        data = self.part.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            log.warning("%s: dropping a record torn by an interrupted run", self.part)
            with open(self.part, "r+b") as f:
                f.truncate(keep)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()  # only if no other fingerprint lives there
        except OSError:
            pass
