"""Whole files through the continual model: one pass per file, a result per file.

Per file: decode in blocks (a reader thread decodes the next block while the model works on
this one) -> streaming log-mel -> the block's new patches embedded in one batch -> one
continual step per hop. Nothing is recomputed over a window, and memory is bounded by the
block size whatever the file's length.

The clip-level result is the **mean of the per-hop class probabilities** over all hops of the
file (each hop predicts from the window of its last <= n tokens, as ``coaudio stream`` does).
The optional timeline lists every hop's top class.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from coaudio.audio import AudioError, audio_files_under, stream_audio
from coaudio.online.engine import Engine
from coaudio.online.model import OnlineModel, load_online
from coaudio.workers import one_thread, worker_pool

log = logging.getLogger(__name__)

BLOCK_SECONDS = 10.0


@dataclass
class FileResult:
    path: str  # as the user named it: the folder argument joined with the path inside it
    status: str  # "ok" or "failed"
    duration_s: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    hops: int = 0
    top: list[tuple[str, float]] = field(default_factory=list)  # clip level, best first
    timeline: list[tuple[float, float, str, float]] | None = None  # (start_s, end_s, label, p) per hop
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FileResult:
        data = dict(data)
        data["top"] = [tuple(t) for t in data.get("top", [])]
        if data.get("timeline") is not None:
            data["timeline"] = [tuple(t) for t in data["timeline"]]
        return cls(**data)


def find_inputs(paths: Iterable[str], pattern: str | None = None) -> list[tuple[Path, str]]:
    """(file, shown path) for every input: files as given, folders searched recursively for
    supported formats (hidden files and folders skipped), ``pattern`` (fnmatch on the shown
    path or the name) filtering both. Sorted by shown path, duplicates removed."""
    from fnmatch import fnmatch

    found: dict[str, Path] = {}
    for given in paths:
        root = Path(given)
        for f in audio_files_under(root) if root.is_dir() else [root]:
            found.setdefault(str(f), f)  # a found file is the folder as given / its path inside
    shown = sorted(found)
    if pattern:
        shown = [s for s in shown if fnmatch(s, pattern) or fnmatch(Path(s).name, pattern)]
    return [(found[s], s) for s in shown]


def classify_file(
    online: OnlineModel,
    path: Path,
    shown: str,
    top_k: int = 3,
    timeline: bool = False,
    block_seconds: float = BLOCK_SECONDS,
) -> FileResult:
    """One file through the model; decoding problems become a failed result, never an exception."""
    try:
        info, blocks = stream_audio(path, block_seconds=block_seconds)
        result = FileResult(shown, "ok", info.duration_s, info.sample_rate, info.channels)
        _run(online, info.sample_rate, _prefetch(blocks), result, top_k, timeline)
    except AudioError as exc:
        return FileResult(shown, "failed", error=exc.reason)
    except OSError as exc:
        return FileResult(shown, "failed", error=f"{type(exc).__name__}: {exc}")
    if result.hops == 0:
        return FileResult(
            shown,
            "failed",
            result.duration_s,
            result.sample_rate,
            result.channels,
            error=f"too short: {result.duration_s:.3f} s, one prediction needs "
            f"{online.frontend.hop_end_s(0):.3f} s",
        )
    return result


def _run(
    online: OnlineModel, sample_rate: int, blocks: Iterator, result: FileResult, top_k: int, timeline: bool
) -> None:
    """The file as one stream of the per-hop engine: each block's patches embedded in one batch,
    one step per hop; the clip result is the mean of the hops' probabilities."""
    engine, labels = Engine(online), online.labels
    engine.open(0, sample_rate)
    total, hops = None, []
    for block in _with_end(blocks):  # one block in memory (plus what the reader prefetched)
        for hop in engine.push(0, block) if block is not None else engine.close(0):
            total = hop.probs.clone() if total is None else total + hop.probs
            if timeline:
                index, p = hop.top(1)[0]
                hops.append((hop.start_s, hop.end_s, labels[index], p))
            result.hops += 1
    if total is not None:
        mean = total / result.hops
        values, indices = mean.topk(min(top_k, mean.numel()))
        result.top = [(labels[int(i)], float(v)) for v, i in zip(values, indices)]
    result.timeline = hops if timeline else None


def _with_end(blocks: Iterator) -> Iterator:
    yield from blocks
    yield None


def _prefetch(blocks: Iterator, depth: int = 2) -> Iterator:
    """Decode the next blocks on a thread (libsndfile releases the GIL) while the caller works;
    exceptions of the decoder are raised in the caller, in order."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def read() -> None:
        try:
            for block in blocks:
                q.put(block)
            q.put(done)
        except BaseException as exc:  # handed over to the consumer
            q.put(exc)

    threading.Thread(target=read, daemon=True).start()
    while True:
        item = q.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


# --- many files, several processes -------------------------------------------------------

_WORKER: dict = {}


def _worker_init(checkpoint: str) -> None:
    one_thread()  # one process per core, as every worker pool's default initializer
    _WORKER["online"] = load_online(checkpoint)


def _worker_classify(path: Path, shown: str, top_k: int, timeline: bool) -> FileResult:
    return classify_file(_WORKER["online"], path, shown, top_k, timeline)


def classify_files(
    checkpoint: str,
    inputs: list[tuple[Path, str]],
    top_k: int = 3,
    timeline: bool = False,
    jobs: int = 1,
    loaded: OnlineModel | None = None,
) -> Iterator[FileResult]:
    """Results in completion order; ``jobs`` worker processes (spawned: forking a process
    whose torch thread pools have started can hang), each loading the model once. With one
    job the files run in this process, on ``loaded`` when the caller has the model already."""
    if jobs <= 1 or len(inputs) <= 1:
        one_thread()  # per-hop work in this process: one thread
        online = loaded or load_online(checkpoint)
        for path, shown in inputs:
            yield classify_file(online, path, shown, top_k, timeline)
        return
    from concurrent.futures import as_completed

    with worker_pool(jobs, _worker_init, (checkpoint,)) as pool:
        n = len(inputs)
        futures = pool.submit_all(
            _worker_classify, [p for p, _ in inputs], [s for _, s in inputs], [top_k] * n, [timeline] * n
        )
        for future in as_completed(futures):
            yield future.result()
