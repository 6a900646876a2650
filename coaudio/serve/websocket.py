"""``/ws``: one WebSocket, one stream (or one watcher); the protocol is in coaudio.serve.protocol.

Each connection has two halves. The receiving half decodes PCM and queues it in the hub; when
more than ``max_backlog_s`` of this stream's audio waits for the model it stops reading, so
TCP slows that one client down instead of memory growing. The sending half takes results from
a bounded queue the hub fills: a client that does not read its results loses the oldest ones
(counted, reported in its summary and in /metrics) and nobody else notices. When the server
stops, the receiving half is cancelled and the stream ends as if the client had sent
``{"end": true}`` (see :mod:`coaudio.serve.drain`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from coaudio.serve.drain import GOING_AWAY, STOPPING_REASON, Drain
from coaudio.serve.hub import Hub
from coaudio.serve.protocol import Limits, PcmDecoder, ProtocolError, StreamSpec, parse_control, parse_first

log = logging.getLogger(__name__)

END_TIMEOUT_S = 60.0  # after {"end": true}: the longest wait for the last hops
REOPEN_WAIT_S = 5.0  # a name its own address still holds: the longest wait for it
BACKLOG_POLL_S = 0.01


class Stopping(Exception):
    """The server is stopping: this connection reads no more."""


class QueueSink:
    """The hub's results for one connection, queued on the event loop, dropped when full."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, metrics) -> None:
        self.loop, self.metrics = loop, metrics
        self.queue: asyncio.Queue[dict] = asyncio.Queue(size)
        self.dropped = 0
        self.closed = False
        self.seen_end = asyncio.Event()  # the sender sent an end or error message

    def deliver(self, messages: list[dict]) -> None:  # on the hub's thread
        if not self.closed:
            self.loop.call_soon_threadsafe(self._put, messages)

    def _put(self, messages: list[dict]) -> None:  # on the event loop
        for message in messages:
            if message["type"] in ("end", "error"):
                message = self._final(message)
            elif self.queue.full():
                self._drop()
                continue
            self.queue.put_nowait(message)

    def finish(self) -> None:
        """The sender returns after sending what is queued now (event loop only)."""
        if self.queue.full():
            self.queue.get_nowait()
            self._drop()
        self.queue.put_nowait({"type": "finish"})

    def _final(self, message: dict) -> dict:
        """The end and error messages always get through: they push out the oldest result."""
        if self.queue.full():
            self.queue.get_nowait()
            self._drop()
        if message["type"] == "end":
            summary = dict(message["summary"], dropped=self.dropped)
            message = dict(message, summary=summary)
        return message

    def _drop(self) -> None:
        self.dropped += 1
        self.metrics.results_dropped()


async def stream_endpoint(websocket: WebSocket) -> None:
    drain: Drain = websocket.app.state.drain
    drain.opened()
    try:
        await _connection(websocket, drain)
    finally:
        drain.closed()


async def _connection(websocket: WebSocket, drain: Drain) -> None:
    hub: Hub = websocket.app.state.hub
    limits: Limits = websocket.app.state.limits
    await websocket.accept()
    peer = websocket.client.host if websocket.client else ""
    try:
        first = await _reading(drain, asyncio.wait_for(websocket.receive(), limits.hello_timeout_s))
    except TimeoutError:
        await _refuse(websocket, f"no declaration within {limits.hello_timeout_s:g} s")
        return
    except Stopping:
        await _refuse(websocket, "the server is stopping", code=GOING_AWAY)
        return
    if first["type"] == "websocket.disconnect":
        return
    sink = QueueSink(asyncio.get_running_loop(), limits.max_queued_results, hub.metrics)
    try:
        request = parse_first(first.get("text"), limits, peer)
        if isinstance(request, str):
            await _watch_counted(websocket, hub, drain, request, sink, peer)
            return
        stream = await _open(hub, request, sink, limits)
    except ProtocolError as exc:
        await _refuse(websocket, str(exc), "protocol")
        return
    await _run_stream(websocket, hub, limits, request, stream, sink)


async def _open(hub: Hub, spec: StreamSpec, sink: QueueSink, limits: Limits) -> int:
    """Open the stream. A client that reconnects under its name before the server has noticed
    that its old connection is gone, or while it flushes the stream left behind, waits for that
    (milliseconds; at most REOPEN_WAIT_S) instead of being told the name is taken; a name held
    by another address, or a pulled source's (streaming or not), is refused at once."""
    hub.check_name(spec)
    deadline = time.monotonic() + REOPEN_WAIT_S
    while time.monotonic() < deadline:
        holder = hub.holder(spec.name)
        if holder is None or not (holder[1] or holder[0] == spec.source):
            break
        await asyncio.sleep(BACKLOG_POLL_S)
    if hub.count_from(spec.source) >= limits.max_streams_per_client:  # after the wait: the old one left
        raise ProtocolError(f"at most {limits.max_streams_per_client} live streams per client")
    return hub.open(spec, sink)


async def _watch_counted(websocket: WebSocket, hub: Hub, drain: Drain, name: str, sink, peer: str) -> None:
    """A watcher, within the per-client limit of watchers."""
    watchers = websocket.app.state.watchers  # remote address -> watching connections
    limit = websocket.app.state.limits.max_watchers_per_client
    if watchers.get(peer, 0) >= limit:
        raise ProtocolError(f"at most {limit} watchers per client")
    watchers[peer] = watchers.get(peer, 0) + 1
    try:
        await _watch(websocket, hub, drain, name, sink)
    finally:
        watchers[peer] -= 1
        if not watchers[peer]:
            del watchers[peer]


async def _reading(drain: Drain, reader):
    """Await ``reader`` (a coroutine that reads from the client) as a task a stopping server
    cancels: :class:`Stopping` then, instead of the cancellation."""
    task = asyncio.ensure_future(reader)
    drain.reading(task)
    try:
        return await task
    except asyncio.CancelledError:
        if drain.stopped_reading(task) and not asyncio.current_task().cancelling():
            raise Stopping() from None
        raise


async def _run_stream(
    websocket: WebSocket, hub: Hub, limits: Limits, spec: StreamSpec, stream: int, sink: QueueSink
) -> None:
    drain: Drain = websocket.app.state.drain
    await websocket.send_text(json.dumps(_ready(hub, spec)))
    sender = asyncio.create_task(_send_all(websocket, sink, until_end=True))
    decoder = PcmDecoder(spec, limits)
    code = 1000
    try:
        ended = await _reading(drain, _receive_audio(websocket, hub, limits, stream, decoder))
    except ProtocolError as exc:
        sink.closed = True
        hub.end(stream)
        sender.cancel()
        hub.metrics.errors.labels("protocol").inc()
        await _refuse(websocket, str(exc))
        return
    except Stopping:  # as if the client had sent {"end": true}
        ended, code = True, GOING_AWAY
    if not ended:  # the client went away: nobody to send the rest to
        sink.closed = True
        hub.end(stream)
        sender.cancel()
        return
    hub.end(stream, STOPPING_REASON if code == GOING_AWAY else "client ended")
    try:
        await asyncio.wait_for(sender, END_TIMEOUT_S)
        await websocket.close(code, STOPPING_REASON if code == GOING_AWAY else None)
    except (TimeoutError, WebSocketDisconnect, RuntimeError):
        sender.cancel()


async def _receive_audio(websocket: WebSocket, hub: Hub, limits: Limits, stream: int, decoder) -> bool:
    """Audio until ``{"end": true}`` (True) or a disconnect (False)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return False
        if message.get("bytes") is not None:
            hub.push(stream, decoder.decode(message["bytes"]))
            while hub.backlog_s(stream) > limits.max_backlog_s:
                await asyncio.sleep(BACKLOG_POLL_S)
        elif message.get("text") is not None:
            parse_control(message["text"], limits)
            return True


async def _send_all(websocket: WebSocket, sink: QueueSink, until_end: bool) -> None:
    while True:
        message = await sink.queue.get()
        if message["type"] == "finish":
            return
        await websocket.send_text(json.dumps(message))
        if message["type"] in ("end", "error"):
            sink.seen_end.set()
            if until_end:
                return


async def _watch(websocket: WebSocket, hub: Hub, drain: Drain, name: str, sink: QueueSink) -> None:
    """Send everything stream ``name`` produces (across its restarts) until the client leaves.
    Subscribed before "watching" is sent: what the stream produces meanwhile waits in the sink.
    When the server stops, a watcher of a live stream gets that stream's last hops and its end
    first, then the connection closes (1001)."""
    hub.watch(name, sink)
    live = hub.holder(name) is not None
    await websocket.send_text(json.dumps(dict(_model(hub), type="watching", stream=name, live=live)))
    sender = asyncio.create_task(_send_all(websocket, sink, until_end=False))
    try:
        await _reading(drain, _ignore_until_gone(websocket))
    except Stopping:
        if hub.holder(name) is not None:  # it ends now: wait for its end message
            await _wait_quietly(sink.seen_end.wait(), END_TIMEOUT_S)
        sink.finish()
        await _wait_quietly(sender, 5.0)
        await _close_quietly(websocket, GOING_AWAY, STOPPING_REASON)
    finally:
        sink.closed = True
        hub.unwatch(name, sink)
        sender.cancel()


async def _ignore_until_gone(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass  # a watcher has nothing to say; whatever it sends is ignored


async def _wait_quietly(awaitable, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        pass


async def _close_quietly(websocket: WebSocket, code: int, reason: str | None = None) -> None:
    try:
        await websocket.close(code, reason)
    except (WebSocketDisconnect, RuntimeError):
        pass  # it is gone already


def _ready(hub: Hub, spec: StreamSpec) -> dict:
    """The first server message: what the stream will get (labels for a page's bars)."""
    return dict(_model(hub), type="ready", stream=spec.name)


def _model(hub: Hub) -> dict:
    """What a stream's or a watcher's first message says about the model."""
    frontend, online = hub.online.frontend, hub.online
    return {
        "labels": online.labels,
        "hop_s": round(frontend.hop_end_s(1) - frontend.hop_end_s(0), 6),
        "window": online.window,
        "frontend": frontend.kind,
    }


async def _refuse(websocket: WebSocket, message: str, reason: str | None = None, code: int = 1008) -> None:
    """A JSON error, then close this one connection (1008: policy violation)."""
    if reason:
        websocket.app.state.hub.metrics.errors.labels(reason).inc()
    try:
        await websocket.send_text(json.dumps({"type": "error", "error": message}))
        await websocket.close(code)
    except (WebSocketDisconnect, RuntimeError):
        pass  # it is gone already
