"""The hub: every live stream of a server through one :class:`~coaudio.online.engine.Engine`.

Audio arrives on many threads (the event loop for WebSocket clients, a thread per pulled
source) and is only queued there. One worker thread takes everything queued, as soon as it is
free but at most once per ``batch_interval_s`` (25 ms: what arrives meanwhile joins the batch),
and runs it as one batch: streams that opened are opened, each stream's new
audio goes through ``Engine.push_many`` (log-mel per stream, every completed patch of every
stream embedded together, streams stepped together round by round), streams that ended are
flushed and closed. Results go to each stream's sinks (its client and any watchers) without
blocking: a sink queues them on its own side and drops what a slow client cannot take.

The interval trades up to 25 ms of latency for batches large enough to be cheap: clients
that start at different moments otherwise arrive a few at a time, and the engine's cost per hop
falls with the batch (GTZAN recipe's model, one core: 2.5 ms alone, 1.1 ms in fours, 0.6 ms in
sixteens). Measured with ``coaudio bench serve``'s clients, 128 streams on one core: 1.6 ms of
server CPU per hop without the interval, 1.3 ms with it (p50 latency 12 -> 33 ms).

Because the engine's hops for a stream do not depend on what else is in the batch, a stream
gets the same results as ``coaudio stream`` on the same audio, however many others run.

A hop's ``latency_ms`` here is measured from the arrival of the oldest audio in the batch that
completed it to its result: time spent waiting in the queue counts, which is what a client sees.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from coaudio.online.engine import Engine, Hop
from coaudio.online.model import OnlineModel
from coaudio.online.records import hop_record
from coaudio.serve.messages import describe, mel_message, mel_range, summarize
from coaudio.serve.metrics import ServerMetrics
from coaudio.serve.protocol import Limits, ProtocolError, StreamSpec

log = logging.getLogger(__name__)

LATENCY_KEEP = 10_000  # latencies kept per stream for its summary (the newest)
BATCH_INTERVAL_S = 0.025  # the worker starts a batch at most this often (module docstring)


class Sink(Protocol):
    def deliver(self, messages: list[dict]) -> None:
        """Called on the hub's worker thread (and by :meth:`Hub.announce` on its caller's):
        must return at once (queue, never wait)."""


@dataclass
class _Live:
    id: int
    spec: StreamSpec
    sink: Sink
    started: float = field(default_factory=time.time)
    queued: list[np.ndarray] = field(default_factory=list)
    queued_samples: int = 0
    first_arrival: float | None = None  # perf_counter of the oldest queued block
    ending: bool = False
    end_reason: str = "client ended"  # for the summary: or "server stopping", "source dropped: ..."
    opened: bool = False  # in the engine
    session: int | None = None  # the history's id of this stream
    hops: int = 0
    audio_s: float = 0.0
    prob_sum: torch.Tensor | None = None
    predicted: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))
    last: dict | None = None  # the newest hop record


@dataclass
class _Batch:
    opens: list[_Live]
    blocks: dict[int, np.ndarray]
    arrivals: dict[int, float]
    ends: list[_Live]


class Hub:
    """Thread-safe front: :meth:`open`, :meth:`push`, :meth:`end`, :meth:`watch`; one worker
    thread does all model work (see the module docstring)."""

    def __init__(
        self,
        online: OnlineModel,
        limits: Limits | None = None,
        history=None,
        metrics: ServerMetrics | None = None,
        engine: Engine | None = None,
        batch_interval_s: float = BATCH_INTERVAL_S,
    ) -> None:
        self.online, self.limits, self.history = online, limits or Limits(), history
        self.batch_interval_s = batch_interval_s
        self.metrics = metrics or ServerMetrics()
        self._engine = engine or Engine(online, keep_frames=True)
        self._lock = threading.Condition()
        self._live: dict[int, _Live] = {}
        self._names: dict[str, int] = {}
        self._reserved: set[str] = set()  # pulled sources' names: no client's (reserve)
        self._watchers: dict[str, list[Sink]] = {}
        self._ids = itertools.count(1)
        self._dirty = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="coaudio-hub", daemon=True)
        self._mel_range = mel_range(online.frontend.kind)
        self._fingerprint: str | None = None
        self.sources: dict | None = None  # name -> pulled source feeding it (coaudio.serve.source_metrics)

    def start(self) -> Hub:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End every stream (their clients get their last hops and summaries), then stop."""
        with self._lock:
            for live in self._live.values():
                if not live.ending:
                    live.ending, live.end_reason = True, "server stopping"
            self._stopping = self._dirty = True
            self._lock.notify()
        self._thread.join(timeout)

    # ---- called from any thread -------------------------------------------------------------

    def open(self, spec: StreamSpec, sink: Sink) -> int:
        """Register a stream; its id. ProtocolError when the name is taken or reserved, or the hub is full."""
        with self._lock:
            if self._stopping:
                raise ProtocolError("the server is shutting down")
            self.check_name(spec)
            if spec.name in self._names:
                raise ProtocolError(f"a stream named {spec.name!r} is already live; pick another name")
            if len(self._live) >= self.limits.max_streams:
                raise ProtocolError(f"the server is full ({self.limits.max_streams} live streams)")
            live = _Live(next(self._ids), spec, sink)
            self._live[live.id], self._names[spec.name] = live, live.id
            self._dirty = True
            self._lock.notify()
        self.metrics.streams_opened(spec.kind)
        return live.id

    def reserve(self, name: str) -> None:
        """``name`` is a pulled source's for the hub's lifetime, streaming or not: never a client's."""
        with self._lock:
            self._reserved.add(name)

    def check_name(self, spec: StreamSpec) -> None:
        """ProtocolError when a client's stream asks for a pulled source's name."""
        if spec.kind == "ws" and spec.name in self._reserved:
            raise ProtocolError(
                f"the name {spec.name!r} belongs to a pulled source of this server; pick another name"
            )

    def push(self, stream: int, samples: np.ndarray) -> None:
        """Queue ``(N,)`` mono float32 samples of ``stream`` (never blocks on the model)."""
        if not len(samples):
            return
        with self._lock:
            live = self._live.get(stream)
            if live is None or live.ending:
                return
            live.queued.append(samples)
            live.queued_samples += len(samples)
            if live.first_arrival is None:
                live.first_arrival = time.perf_counter()
            self._dirty = True
            self._lock.notify()

    def backlog_s(self, stream: int) -> float:
        """Seconds of ``stream``'s audio queued and not yet taken by the worker."""
        with self._lock:
            live = self._live.get(stream)
            return 0.0 if live is None else live.queued_samples / live.spec.sample_rate

    def end(self, stream: int, reason: str = "client ended") -> None:
        """No more audio: the worker flushes the stream, sends its summary (with ``reason``),
        forgets it."""
        with self._lock:
            live = self._live.get(stream)
            if live is not None:
                if not live.ending:  # the first reason stands
                    live.end_reason = reason
                live.ending = self._dirty = True
                self._lock.notify()

    def watch(self, name: str, sink: Sink) -> None:
        with self._lock:
            self._watchers.setdefault(name, []).append(sink)

    def unwatch(self, name: str, sink: Sink) -> None:
        with self._lock:
            sinks = self._watchers.get(name, [])
            if sink in sinks:
                sinks.remove(sink)
            if not sinks:
                self._watchers.pop(name, None)

    def announce(self, name: str, message: dict) -> None:
        """Deliver ``message`` to the watchers of ``name``, live or not, on the caller's thread
        (a pulled source's drop: it has no stream to send it with)."""
        with self._lock:
            watchers = list(self._watchers.get(name, ()))
        for watcher in watchers:
            watcher.deliver([message])

    def live(self) -> list[dict]:
        """The live streams, for ``/api/streams``."""
        with self._lock:
            streams = list(self._live.values())
        return [describe(s) for s in streams]

    def holder(self, name: str) -> tuple[str, bool] | None:
        """(remote address, being flushed) of the live stream of this name; None if free."""
        with self._lock:
            live = self._live.get(self._names.get(name, -1))
            return None if live is None else (live.spec.source, live.ending)

    def count_from(self, source: str) -> int:
        with self._lock:
            return sum(1 for s in self._live.values() if s.spec.kind == "ws" and s.spec.source == source)

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._live)

    # ---- the worker thread --------------------------------------------------------------------

    def _run(self) -> None:
        started = -self.batch_interval_s
        while True:
            with self._lock:
                while not self._dirty:
                    self._lock.wait()
            # too soon after the last batch began: let more streams' audio join this one
            wait = started + self.batch_interval_s - time.perf_counter()
            if wait > 0 and not self._stopping:
                time.sleep(wait)
            started = time.perf_counter()
            with self._lock:
                batch = self._take()
                stopping = self._stopping and not self._live
            if batch.opens or batch.blocks or batch.ends:
                self._process(batch)
            if stopping:
                return

    def _take(self) -> _Batch:
        """Everything queued, under the lock; the lists it returns are the worker's alone."""
        self._dirty = False
        opens = [s for s in self._live.values() if not s.opened]
        blocks, arrivals = {}, {}
        for s in self._live.values():
            s.opened = True
            if s.queued:
                blocks[s.id] = s.queued[0] if len(s.queued) == 1 else np.concatenate(s.queued)
                arrivals[s.id] = s.first_arrival
                s.queued, s.queued_samples, s.first_arrival = [], 0, None
        ends = [s for s in self._live.values() if s.ending]
        for s in ends:
            del self._live[s.id]
            del self._names[s.spec.name]
        if ends:
            self._dirty = self._stopping and bool(self._live)
        return _Batch(opens, blocks, arrivals, ends)

    def _process(self, batch: _Batch) -> None:
        for live in batch.opens:
            self._engine.open(live.id, live.spec.sample_rate)
            if self.history is not None:
                spec = live.spec
                live.session = self.history.open_stream(
                    spec.name, spec.kind, spec.source, spec.sample_rate, spec.channels, self._model_id()
                )
        everyone = {s.id: s for s in batch.opens}
        everyone.update({s.id: s for s in batch.ends})
        try:
            results = self._engine.push_many(batch.blocks) if batch.blocks else {}
            mels = {i: self._engine.take_frames(i) for i in batch.blocks}  # taken always: none pile up
            for live in batch.ends:
                results.setdefault(live.id, []).extend(self._engine.close(live.id))
        except Exception:  # a defect must not stop every other stream for good
            log.exception("the hub's batch failed; its streams are closed")
            self._fail(batch)
            return
        now, done = time.time(), time.perf_counter()  # one reading for the round's results
        tallies = []  # (hops, latency ms, seconds of audio) per stream: the metrics in one call
        for stream_id, hops in results.items():
            live = everyone.get(stream_id) or self._lookup(stream_id)
            if live is not None:
                arrived = batch.arrivals.get(stream_id)
                latency = (done - arrived) * 1e3 if arrived is not None else 0.0
                block = batch.blocks.get(stream_id)
                audio_s = len(block) / live.spec.sample_rate if block is not None else 0.0
                self._deliver(live, hops, now, latency, audio_s, mels.get(stream_id))
                tallies.append((len(hops), latency, audio_s))
        self.metrics.hops_many(tallies)
        for live in batch.ends:
            self._finish(live)

    def _lookup(self, stream_id: int) -> _Live | None:
        with self._lock:
            return self._live.get(stream_id)

    def _deliver(self, live: _Live, hops: list[Hop], now: float, latency: float, audio_s: float, mel) -> None:
        live.audio_s += audio_s
        records = [self._record(live, hop, now, latency) for hop in hops]
        messages = list(records)
        if mel is not None and len(mel) and (live.spec.spectrogram or self._watchers.get(live.spec.name)):
            messages.insert(0, mel_message(live.spec.name, mel, self._mel_range))
        if messages:
            self._send(live, messages)
        if records and self.history is not None:
            self.history.add(live.session, records)

    def _record(self, live: _Live, hop: Hop, now: float, latency: float) -> dict:
        record = hop_record(hop, self.online.labels, live.spec.top_k, with_top=True)
        record.update(type="hop", stream=live.spec.name, time=round(now, 3), latency_ms=round(latency, 3))
        live.hops += 1
        live.latencies.append(latency)
        if hop.probs is not None:
            if live.prob_sum is None:
                live.prob_sum = hop.probs.clone()
            else:
                live.prob_sum += hop.probs
            live.predicted += 1
        live.last = record
        return record

    def _send(self, live: _Live, messages: list[dict]) -> None:
        if live.spec.spectrogram:
            live.sink.deliver(messages)
        else:
            live.sink.deliver([m for m in messages if m["type"] != "mel"])
        for watcher in list(self._watchers.get(live.spec.name, ())):
            watcher.deliver(messages)

    def _finish(self, live: _Live) -> None:
        summary = summarize(live, self.online.labels)
        self._send(live, [{"type": "end", "end": True, "stream": live.spec.name, "summary": summary}])
        if self.history is not None and live.session is not None:
            self.history.end_stream(live.session)
        self.metrics.streams_closed(live.spec.kind)

    def _fail(self, batch: _Batch) -> None:
        ids = set(batch.blocks) | {s.id for s in batch.opens} | {s.id for s in batch.ends}
        with self._lock:
            failed = [self._live.pop(i) for i in ids if i in self._live] + batch.ends
            for live in failed:
                self._names.pop(live.spec.name, None)
        for live in {s.id: s for s in failed}.values():
            self._engine.discard(live.id)
            self._send(live, [{"type": "error", "stream": live.spec.name, "error": "internal error"}])

    def _model_id(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = self.online.fingerprint()
        return self._fingerprint
