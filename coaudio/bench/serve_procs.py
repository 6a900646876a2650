"""The processes of ``coaudio bench serve``: where they run (cores, priority), the server.

**Pinning.** With two or more usable cores the server gets the first one and the load
generator the others (``os.sched_setaffinity``, inherited by every thread). The clients cost
CPU too (a JSON decode per result, a frame per chunk); pinned apart they cannot take it from
the server, so the answer is "streams per server core", and it does not depend on how hard the
generator works. The server's two busy threads (uvicorn's event loop, the hub's worker on one
torch thread) share its core. With one usable core nothing is pinned (and the result says so).

**Priority.** Pinned, the server and the load generator also ask for ``NICE`` (-20, the
highest; refused without the privilege, and the result says what they got). Other processes
on a shared machine (test suites, builds) otherwise take turns on the server's core: with two
of them runnable there, the server had a third of it, and the same code measured 160 to 208
streams. At the highest priority the server's core is its own, as "streams per server core"
says; the other processes move to the remaining cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

URL_LINE = re.compile(r"coaudio serve: (http://\S+/)")
# python -c PIN CORES NICE PROGRAM ARGS...: pins itself and asks for the priority NICE, then
# becomes PROGRAM (its threads inherit both; a refused priority leaves it as it was)
PIN = """import os, sys
os.sched_setaffinity(0, map(int, sys.argv[1].split(",")))
try:
    os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[2]))
except OSError:
    pass
os.execv(sys.argv[3], sys.argv[3:])
"""
NICE = -20  # the priority the pinned processes ask for (the highest)
SAMPLE_RATE = 16_000  # of the clips, as the clients declare it


@dataclass(frozen=True)
class Pinning:
    server: list[int] | None
    clients: list[int] | None
    why: str
    nice: int | None = None  # the priority asked for; None: left as it is


def pinning(enabled: bool = True) -> Pinning:
    """Server on the first usable core, the load generator on the others, both at ``NICE``
    (module docstring)."""
    cores = sorted(os.sched_getaffinity(0))
    if not enabled:
        return Pinning(None, None, "not pinned (--no-pin): server and clients share every core")
    if len(cores) < 2:
        return Pinning(None, None, "one usable core: server and clients share it")
    return Pinning(
        [cores[0]],
        cores[1:],
        f"server on core {cores[0]}, clients on {','.join(map(str, cores[1:]))}: the load generator "
        "cannot take CPU from the server, so the result is streams per server core",
        NICE,
    )


def raise_priority(nice: int | None) -> int:
    """Ask for priority ``nice`` for the calling thread (and the threads and processes it
    starts); the priority it has afterwards (unchanged when refused)."""
    if nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError:
            pass  # no privilege: measured as the machine allows, and reported
    return os.getpriority(os.PRIO_PROCESS, 0)


def priority_of(pid: int) -> int | None:
    """The priority (nice) of process ``pid``'s main thread, None if it is gone."""
    try:
        return os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return None


class ServerProcess:
    """A real ``coaudio serve`` (no history, limits raised to ``cap``), pinned and raised to
    ``nice`` if asked."""

    def __init__(
        self, checkpoint: Path, engine: str, cap: int, cores: list[int] | None, nice: int | None = None
    ) -> None:
        command = [sys.executable, "-m", "coaudio", "serve", str(checkpoint), "--port", "0", "--no-db"]
        command += ["--max-streams", str(cap), "--max-per-client", str(cap), "--threads", "1"]
        command += ["--engine", engine]
        if cores:
            pin = [",".join(map(str, cores)), str(0 if nice is None else nice)]
            command = [sys.executable, "-c", PIN, *pin, *command]
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        found = threading.Event()
        threading.Thread(target=self._read, args=(found,), daemon=True).start()
        deadline = time.monotonic() + 120
        while not found.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"coaudio serve did not start: {''.join(self.lines)[-2000:]}")
        self.url = URL_LINE.search("".join(self.lines)).group(1)

    def _read(self, found: threading.Event) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if URL_LINE.search(line):
                found.set()

    @property
    def ws(self) -> str:
        return "ws" + self.url[len("http") :] + "ws"

    def live_streams(self) -> int:
        with urllib.request.urlopen(self.url + "health", timeout=10) as response:
            return json.loads(response.read())["streams"]

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Until the last trial's streams are gone (a server that fell behind classifies their
        queued audio first); False if they are not gone within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.live_streams():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def engine_probe(
    online, cores: list[int] | None, nice: int | None = None, streams: int = 16, rounds: int = 16
) -> float:
    """How fast this machine is now: milliseconds per hop of :class:`~coaudio.online.engine.Engine`
    in batches of ``streams`` (0.25 s of noise each), in this process on the server's core and
    one torch thread, at the server's priority. Runs of the benchmark are comparable only as
    far as their probes agree (the same code measured 0.63 and 1.05 ms on this VM within an
    hour, before the priority was raised)."""
    import numpy as np
    import torch

    from coaudio.online.engine import Engine
    from coaudio.threads import torch_threads

    affinity, priority = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    engine = Engine(online)
    block = (0.1 * np.random.default_rng(0).standard_normal(4_000)).astype(np.float32)
    for s in range(streams):
        engine.open(s, SAMPLE_RATE)
    times = []
    try:
        if cores:
            os.sched_setaffinity(0, cores)
            raise_priority(nice)
        with torch_threads(1), torch.inference_mode():
            for r in range(4 + rounds):  # the first 4 complete the first patch
                began = time.perf_counter()
                hops = sum(len(h) for h in engine.push_many({s: block for s in range(streams)}).values())
                if r >= 4:
                    times.append((time.perf_counter() - began) * 1e3 / max(hops, 1))
    finally:
        os.sched_setaffinity(0, affinity)
        os.setpriority(os.PRIO_PROCESS, 0, priority)  # lowering back needs no privilege
    return sorted(times)[len(times) // 2]
