"""The load generator of ``coaudio bench serve``: N real-time clients of one ``coaudio serve``.

Run as its own process (``python -m coaudio.bench.serve_load``, a JSON :class:`LoadPlan` on
stdin, a JSON result on stdout), never inside the server's: one asyncio loop, one WebSocket per
stream (the ``websockets`` client, as a real client would use it, compression negotiated as
browsers do). It imports neither torch nor the model.

Timeline of a trial (``t0``: the first stream's start)::

    stream i starts at t0 + offset_i and sends its chunk j (audio [j c, (j + 1) c), c =
    chunk_s) at t0 + offset_i + (j + 1) c: when a microphone would have it; offset_i is
    c (floor(i R / N) + frac(i phi)), R = ramp_s / c: starts spread over the ramp, and the
    phases within a chunk spread evenly for any N (i / N alone puts 4 streams in step)
    |-- ramp_s + c --|-- warmup_s --|====== trial_s: every stream live, measured ======|
                                ^ window start                    window end ^

A hop counts when the chunk that completes it (the first whose end reaches the hop's end_s)
is due inside the window. Per hop: ``latency`` = receive time - send time of that chunk;
``lag`` = receive time - the moment its audio ended on the stream's schedule (latency plus
any delay of the client's own sends). The server's CPU (per thread, from /proc), this
process's CPU and the machine's busy cores are read at the window's edges.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from coaudio.bench.serve_procs import raise_priority

GOLDEN = (5**0.5 - 1) / 2  # i * GOLDEN mod 1: evenly spread for any count
CONNECT_AT_ONCE = 32  # connections opened concurrently while setting up
END_WAIT_S = 30.0  # after the last chunk: the longest wait for the last hops and the summary
WATCH_EVERY_S = 0.25


@dataclass
class LoadPlan:
    url: str  # ws://host:port/ws
    streams: int
    clips: list[str]  # files of 16 kHz mono s16le PCM; stream i plays clips[i % len] in a loop
    first_end_s: float  # end_s of hop 0 (the front end's patch)
    hop_s: float
    chunk_s: float = 0.25
    sample_rate: int = 16_000
    ramp_s: float = 2.0
    warmup_s: float = 5.0
    trial_s: float = 15.0
    abort_lag_s: float = 3.0  # give up once any stream's results are this late
    server_pid: int | None = None
    cores: list[int] | None = None  # CPU affinity of this process
    prefix: str = "bench"
    compression: bool = True  # offer permessage-deflate, as browsers do (the server accepts it)
    nice: int | None = None  # the priority this process asks for (coaudio.bench.serve_procs)

    @property
    def total_s(self) -> float:
        """Audio each stream sends: the last to start is still live to the window's end."""
        return self.ramp_s + self.chunk_s + self.warmup_s + self.trial_s

    @property
    def window(self) -> tuple[float, float]:
        """The measured span, in seconds after t0."""
        return self.total_s - self.trial_s, self.total_s

    def offset_s(self, i: int) -> float:
        """When stream ``i`` starts, after t0 (see the module docstring)."""
        chunks = round(self.ramp_s / self.chunk_s)
        return self.chunk_s * (i * chunks // self.streams + (i * GOLDEN) % 1.0)


@dataclass
class _Stream:
    index: int
    offset_s: float
    pcm: bytes  # the clip twice over (a loop without wrapping)
    start_byte: int
    sent: list[float] = field(default_factory=list)  # perf_counter of each chunk's send
    late: list[float] = field(default_factory=list)  # s each send came after its due time
    hops: list[tuple[float, float, float]] = field(default_factory=list)  # (end_s, received, server ms)
    dropped: int = 0
    error: str | None = None
    ended: bool = False


def chunk_of(end_s: float, plan: LoadPlan) -> int:
    """The chunk whose arrival completes audio up to ``end_s``."""
    samples = round(end_s * plan.sample_rate)
    return max(0, math.ceil(samples / round(plan.chunk_s * plan.sample_rate)) - 1)


def due(stream_offset_s: float, chunk: int, plan: LoadPlan) -> float:
    """When chunk ``chunk`` of a stream is due, in seconds after t0."""
    return stream_offset_s + (chunk + 1) * plan.chunk_s


def expected_hops(offset_s: float, plan: LoadPlan) -> list[float]:
    """The end_s of the hops whose completing chunk is due inside the window."""
    begin, end = plan.window
    chunks = int(round((plan.total_s) / plan.chunk_s))
    out, k = [], 0
    while True:
        end_s = plan.first_end_s + k * plan.hop_s
        chunk = chunk_of(end_s, plan)
        if chunk >= chunks:
            return out
        if begin <= due(offset_s, chunk, plan) < end:
            out.append(end_s)
        k += 1


async def run(plan: LoadPlan) -> dict:
    """The whole trial; see the module docstring for the result's content."""
    import websockets

    clips = [Path(p).read_bytes() for p in plan.clips]
    streams = [_make_stream(i, plan, clips) for i in range(plan.streams)]
    limit = asyncio.Semaphore(CONNECT_AT_ONCE)
    sockets = await asyncio.gather(*(_connect(websockets, s, plan, limit) for s in streams))
    failed = [s for s, ws in zip(streams, sockets) if ws is None]
    if failed:
        for ws in sockets:
            if ws is not None:
                await ws.close()
        return {"error": f"{len(failed)} of {plan.streams} streams were refused: {failed[0].error}"}
    t0 = time.perf_counter() + 0.5
    abort = asyncio.Event()
    edges = asyncio.create_task(_sample_edges(plan, t0))
    watch = asyncio.create_task(_watch(streams, plan, t0, abort))
    await asyncio.gather(*(_play(ws, s, plan, t0, abort) for s, ws in zip(streams, sockets)))
    watch.cancel()
    if abort.is_set():
        edges.cancel()
        usage = {}
    else:
        usage = await edges
    return _result(streams, plan, t0, usage, abort)


def _make_stream(i: int, plan: LoadPlan, clips: list[bytes]) -> _Stream:
    clip = clips[i % len(clips)]
    frames = len(clip) // 2
    start = (i // len(clips)) * 5_923 % max(frames, 1)  # streams of one clip start apart
    return _Stream(i, plan.offset_s(i), clip + clip, 2 * start)


async def _connect(websockets, s: _Stream, plan: LoadPlan, limit: asyncio.Semaphore):
    declaration = {
        "name": f"{plan.prefix}-{s.index}",
        "sample_rate": plan.sample_rate,
        "channels": 1,
        "format": "s16le",
        "top_k": 1,
    }
    async with limit:
        try:
            deflate = "deflate" if plan.compression else None
            ws = await websockets.connect(plan.url, max_size=None, open_timeout=60, compression=deflate)
            await ws.send(json.dumps(declaration))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            s.error = f"{type(exc).__name__}: {exc}"
            return None
    if ready.get("type") != "ready":
        s.error = ready.get("error", str(ready))
        await ws.close()
        return None
    return ws


async def _play(ws, s: _Stream, plan: LoadPlan, t0: float, abort: asyncio.Event) -> None:
    """Send the stream's chunks on schedule, read its results, end it."""
    reader = asyncio.create_task(_read(ws, s))
    chunk_bytes = 2 * round(plan.chunk_s * plan.sample_rate)
    chunks = int(round(plan.total_s / plan.chunk_s))
    period = len(s.pcm) // 2
    try:
        for j in range(chunks):
            target = t0 + due(s.offset_s, j, plan)
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if abort.is_set() or reader.done():
                break
            at = (s.start_byte + j * chunk_bytes) % period
            s.sent.append(time.perf_counter())
            s.late.append(s.sent[-1] - target)
            await ws.send(s.pcm[at : at + chunk_bytes])
        if not abort.is_set() and not reader.done():
            await ws.send(json.dumps({"end": True}))
            await asyncio.wait_for(asyncio.shield(reader), END_WAIT_S)
    except Exception as exc:  # a closed socket, a timeout: recorded, the others go on
        s.error = s.error or f"{type(exc).__name__}: {exc}"
    finally:
        reader.cancel()
        await ws.close()


async def _read(ws, s: _Stream) -> None:
    from websockets import ConnectionClosed

    try:
        async for message in ws:
            received = time.perf_counter()
            record = json.loads(message)
            kind = record.get("type")
            if kind == "hop":
                s.hops.append((record["end_s"], received, record["latency_ms"]))
            elif kind == "end":
                s.dropped, s.ended = record["summary"].get("dropped", 0), True
                return
            elif kind == "error":
                s.error = record.get("error", "error")
                return
    except ConnectionClosed as exc:
        s.error = s.error or f"connection closed: {exc}"


async def _watch(streams: list[_Stream], plan: LoadPlan, t0: float, abort: asyncio.Event) -> None:
    """Stop the trial once any stream's results are more than abort_lag_s overdue."""
    chunks = int(round(plan.total_s / plan.chunk_s))
    total = 0  # hops a whole stream gives
    while chunk_of(plan.first_end_s + total * plan.hop_s, plan) < chunks:
        total += 1
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        now = time.perf_counter() - t0
        for s in streams:
            # hops whose audio was due more than abort_lag_s ago (plus the chunk that completes them)
            stream_time = now - s.offset_s - plan.abort_lag_s - plan.chunk_s
            owed = max(0, math.floor((stream_time - plan.first_end_s) / plan.hop_s) + 1)
            if len(s.hops) < min(owed, total) - 1 and not s.error:
                abort.set()
                return


async def _sample_edges(plan: LoadPlan, t0: float) -> dict:
    """CPU readings at the window's start and end."""
    begin, end = plan.window
    await asyncio.sleep(max(0.0, t0 + begin - time.perf_counter()))
    first = _cpu_reading(plan.server_pid)
    await asyncio.sleep(max(0.0, t0 + end - time.perf_counter()))
    last = _cpu_reading(plan.server_pid)
    return _usage(first, last)


def _cpu_reading(pid: int | None) -> dict:
    tick = os.sysconf("SC_CLK_TCK")
    reading = {"time": time.perf_counter(), "self": sum(os.times()[:2]), "pid": pid}
    reading.update(threads={}, machine=None)
    if pid is not None:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a thread that ended
            reading["threads"][task.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        reading["machine"] = (sum(values) - values[3] - values[4], sum(values))
    except (OSError, ValueError):
        pass
    return reading


def _usage(first: dict, last: dict) -> dict:
    """CPU seconds per wall second over the window: the server's main thread (the event loop),
    its other threads (the hub's worker), this process, the machine."""
    wall = last["time"] - first["time"]
    main = str(last["pid"])  # the main thread's id is the process id
    threads = {t: last["threads"][t] - first["threads"].get(t, 0.0) for t in last["threads"]}
    out = {
        "wall_s": wall,
        "server_cores": sum(threads.values()) / wall,
        "server_loop_cores": threads.get(main, 0.0) / wall,
        "server_worker_cores": (sum(threads.values()) - threads.get(main, 0.0)) / wall,
        "client_cores": (last["self"] - first["self"]) / wall,
    }
    if first["machine"] and last["machine"]:
        busy = last["machine"][0] - first["machine"][0]
        total = last["machine"][1] - first["machine"][1]
        out["machine_busy_cores"] = busy / total * (os.cpu_count() or 1) if total else 0.0
    return out


def _result(streams: list[_Stream], plan: LoadPlan, t0: float, usage: dict, abort: asyncio.Event) -> dict:
    return {
        "plan": asdict(plan),
        "aborted": abort.is_set(),
        "usage": usage,
        "streams": [_stream_result(s, plan, t0) for s in streams],
    }


def _stream_result(s: _Stream, plan: LoadPlan, t0: float) -> dict:
    """The stream's measured hops as (end_s, latency ms, lag ms, server latency ms)."""
    begin, end = plan.window
    measured = []
    for end_s, received, server_ms in s.hops:
        chunk = chunk_of(end_s, plan)
        if chunk >= len(s.sent) or not begin <= due(s.offset_s, chunk, plan) < end:
            continue
        latency = received - s.sent[chunk]
        lag = received - (t0 + s.offset_s + end_s)
        measured.append((end_s, latency * 1e3, lag * 1e3, server_ms))
    late = sorted(s.late)
    return {
        "index": s.index,
        "expected": len(expected_hops(s.offset_s, plan)),
        "hops": measured,
        "late_ms_p95": 1e3 * late[int(0.95 * (len(late) - 1))] if late else 0.0,
        "dropped": s.dropped,
        "ended": s.ended,
        "error": s.error,
    }


def main() -> None:
    plan = LoadPlan(**json.loads(sys.stdin.read()))
    if plan.cores:
        os.sched_setaffinity(0, plan.cores)
    nice = raise_priority(plan.nice)
    result = dict(asyncio.run(run(plan)), nice=nice)
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
