"""A ``coaudio classify`` run: find files, skip journalled ones, classify, merge.

Under torchrun (``WORLD_SIZE`` > 1) every rank lists the same files, takes every
``world``-th one of those still to do, and journals its own results; after a barrier rank 0
merges all journals in input order. The result of a file never depends on which rank or
worker computed it (one thread each, the same code), so the merged output equals a
single-process run's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from coaudio import distributed
from coaudio import progress as shown_progress
from coaudio.features.cache import (
    file_key,  # path, size and mtime: an edited file is redone
)
from coaudio.online.classify import (
    BLOCK_SECONDS,
    FileResult,
    classify_files,
    find_inputs,
)
from coaudio.online.journal import Journal, fingerprint
from coaudio.online.model import load_online, resolve_checkpoint

log = logging.getLogger(__name__)

Progress = Callable[[int, int, float, float], None]  # (done, total, audio seconds, elapsed seconds)


class BatchRun:
    def __init__(
        self,
        checkpoint,
        paths: list[str],
        pattern: str | None,
        top_k: int,
        timeline: bool,
        jobs: int,
        journal_root: Path,
        resume: bool,
    ) -> None:
        distributed.join()
        self.rank, self.world = distributed.rank_and_world()
        self.checkpoint = str(resolve_checkpoint(checkpoint))
        self.online = load_online(self.checkpoint)
        self.inputs = find_inputs(paths, pattern)
        if not self.inputs:
            raise FileNotFoundError(
                f"no audio files under {', '.join(paths)}" + (f" matching {pattern!r}" if pattern else "")
            )
        self.top_k, self.timeline, self.jobs = top_k, timeline, jobs
        settings = {"top_k": top_k, "timeline": timeline, "block_seconds": BLOCK_SECONDS}
        self.journal = Journal(journal_root, fingerprint(self.online.fingerprint(), settings), self.rank)
        if not resume and self.rank == 0:
            self.journal.reset()
        distributed.barrier()
        self.keys = {shown: _key(path, shown) for path, shown in self.inputs}
        finished = (
            {k for k, r in self.journal.records().items() if r["result"]["status"] == "ok"}
            if resume
            else set()
        )
        todo = [(p, s) for p, s in self.inputs if self.keys[s] not in finished]
        self.skipped = len(self.inputs) - len(todo)
        self.mine = todo[self.rank :: self.world]
        self.complete = False  # set by finish(): every input has a journalled result

    def process(self, progress: Progress | None = None, fail_fast: bool = False, bar: bool = True) -> None:
        """Classify this rank's files, journalling each result as it completes. ``progress``
        is called after each file; without it (and with ``bar``) a tqdm bar is shown."""
        started, audio_s = time.monotonic(), 0.0
        shown = shown_progress.bar(len(self.mine), "classify", "file", enabled=progress is None and bar)
        results = classify_files(
            self.checkpoint, self.mine, self.top_k, self.timeline, self.jobs, self.online
        )
        for done, result in enumerate(results, start=1):
            self.journal.append(self.keys[result.path], result.to_dict())
            audio_s += result.duration_s
            shown_progress.advance(shown)
            if progress is not None:
                progress(done, len(self.mine), audio_s, time.monotonic() - started)
            if fail_fast and result.status != "ok":
                log.warning("stopping at the first failure (--fail-fast): %s", result.path)
                break
        if progress is not None and not self.mine:
            progress(0, 0, 0.0, 0.0)
        shown_progress.close(shown)
        self.journal.close()

    def finish(self) -> list[FileResult] | None:
        """Rank 0: every journalled result in input order (files a --fail-fast stop never
        reached are absent). Other ranks: None."""
        distributed.barrier()
        results = None
        if self.rank == 0:
            records = self.journal.records()
            results = [
                FileResult.from_dict(records[self.keys[s]]["result"])
                for _, s in self.inputs
                if self.keys[s] in records
            ]
            self.complete = len(results) == len(self.inputs)
        distributed.leave()
        return results

    def forget(self) -> None:
        """After the output is safely written: a complete run's journal is not needed."""
        if self.rank == 0 and self.complete:
            self.journal.remove()


def _key(path: Path, shown: str) -> str:
    try:
        return file_key(path)
    except OSError:
        return f"{shown}|unreadable"
