"""How many torch threads a piece of work gets.

Two kinds of work, two rules:

* **Per-hop work** (one stream's step, a file's hops in ``classify``, ``evaluate
  --streaming``) runs on one thread. Its operations are tiny: splitting them across threads
  gains nothing, and when another multi-threaded process shares the cores, OpenMP's spinning
  hand-offs between our threads stall whenever one of them is descheduled (measured: a 1 ms
  hop became 20-100x slower beside a 2-thread training run).
* **Batch work** (training, batch evaluation) gets the cores this process may use, divided by
  the processes of the same job on this machine, less the cores other work keeps busy when it
  starts. It never asks for more threads than there are idle cores, so it cannot oversubscribe
  a busy machine. The count is chosen once, at the start, so a run's arithmetic stays the same
  throughout.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(sample_s: float = 0.2) -> float:
    """Cores kept busy by everything running now, from /proc/stat over ``sample_s`` seconds
    (0 where /proc/stat does not exist). Our own process sleeps while it measures."""
    first = _cpu_times()
    if first is None:
        return 0.0
    time.sleep(sample_s)
    second = _cpu_times()
    busy, total = (second[0] - first[0]), (second[1] - first[1])
    if total <= 0:
        return 0.0
    return busy / total * (os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def batch_threads(requested: int = 0, processes: int = 1, measure: bool = True) -> int:
    """Threads for batch work: ``requested`` when > 0, else ``OMP_NUM_THREADS`` when set,
    else this process's share of the usable cores (``processes`` of the job share them),
    capped by the idle cores."""
    if requested > 0:
        return requested
    if _env_threads() is not None:  # the user's (or a test suite's) explicit OpenMP setting
        return _env_threads()
    share = max(1, usable_cores() // max(1, processes))
    if not measure:
        return share
    idle = usable_cores() - busy_cores()
    threads = max(1, min(share, int(idle + 0.5)))
    if threads < share:
        log.info(
            "other work keeps about %.1f cores busy: using %d torch thread(s) instead of %d",
            usable_cores() - idle,
            threads,
            share,
        )
    return threads


def _env_threads() -> int | None:
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value > 0 else None


def local_processes() -> int:
    """Processes of this job on this machine: torchrun's LOCAL_WORLD_SIZE, else 1."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def set_threads(count: int) -> int:
    """Set torch's intra-op threads; returns the previous count."""
    import torch

    previous = torch.get_num_threads()
    if count != previous:
        torch.set_num_threads(count)
    return previous


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with ``count`` intra-op threads, then restore the previous count."""
    previous = set_threads(count)
    try:
        yield
    finally:
        set_threads(previous)


@contextmanager
def per_hop() -> Iterator[None]:
    """Per-hop work: one thread for the block, then the previous count again."""
    with torch_threads(1):
        yield
