"""Worker processes for batch work: spawned, one torch thread each, deaf to Ctrl-C.

Ctrl-C in a terminal signals the whole process group. A spawned worker that is still importing
torch would die of it with a traceback of its own on the user's screen, and a busy worker would
abandon a half-written result. Workers are therefore started with SIGINT ignored (a disposition
a new interpreter inherits and keeps), and the parent, which does get the KeyboardInterrupt,
cancels what has not started and shuts the pool down.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context


def one_thread() -> None:
    """The default initializer: one intra-op thread per worker, one worker per core."""
    import torch

    torch.set_num_threads(1)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Processes started inside this block ignore SIGINT (only from the main thread, the one
    place Python lets a program change signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def worker_pool(
    jobs: int, initializer: Callable[..., None] = one_thread, initargs: tuple = ()
) -> Iterator[WorkerPool]:
    """A spawn-based pool of ``jobs`` workers; on leaving (normally or by an exception such as
    KeyboardInterrupt) tasks not yet started are cancelled."""
    executor = ProcessPoolExecutor(
        jobs, mp_context=get_context("spawn"), initializer=initializer, initargs=initargs
    )
    pool = WorkerPool(executor)
    try:
        yield pool
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


class WorkerPool:
    def __init__(self, executor: ProcessPoolExecutor) -> None:
        self.executor = executor

    def submit_all(self, fn: Callable, *iterables) -> list[Future]:
        """``fn(*args)`` for each zipped argument tuple; every worker starts inside
        :func:`sigint_ignored` (the pool spawns them while tasks are submitted)."""
        with sigint_ignored():
            return [self.executor.submit(fn, *args) for args in zip(*iterables)]

    def map(self, fn: Callable, *iterables) -> list:
        """Results in input order."""
        return [f.result() for f in self.submit_all(fn, *iterables)]
