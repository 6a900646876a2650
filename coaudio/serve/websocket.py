"""``/ws``: one WebSocket, one stream (or one watcher); the protocol is in coaudio.serve.protocol.

Each connection has two halves. The receiving half decodes PCM and queues it in the hub; when
more than ``max_backlog_s`` of this stream's audio waits for the model it stops reading, so
TCP slows that one client down instead of memory growing. The sending half takes results from
a bounded queue the hub fills: a client that does not read its results loses the oldest ones
(counted, reported in its summary and in /metrics) and nobody else notices.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from coaudio.serve.hub import Hub
from coaudio.serve.protocol import Limits, PcmDecoder, ProtocolError, StreamSpec, parse_control, parse_first

log = logging.getLogger(__name__)

END_TIMEOUT_S = 60.0  # after {"end": true}: the longest wait for the last hops
BACKLOG_POLL_S = 0.01


class QueueSink:
    """The hub's results for one connection, queued on the event loop, dropped when full."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, metrics) -> None:
        self.loop, self.metrics = loop, metrics
        self.queue: asyncio.Queue[dict] = asyncio.Queue(size)
        self.dropped = 0
        self.closed = False

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

    def _final(self, message: dict) -> dict:
        """The end and error messages always get through: they push out the oldest result."""
        if self.queue.full():
            self.queue.get_nowait()
            self._drop()
        if message["type"] == "end":
            message = dict(message, summary=dict(message["summary"], dropped=self.dropped))
        return message

    def _drop(self) -> None:
        self.dropped += 1
        self.metrics.results_dropped()


async def stream_endpoint(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    limits: Limits = websocket.app.state.limits
    await websocket.accept()
    peer = websocket.client.host if websocket.client else ""
    try:
        first = await asyncio.wait_for(websocket.receive(), limits.hello_timeout_s)
    except TimeoutError:
        await _refuse(websocket, f"no declaration within {limits.hello_timeout_s:g} s")
        return
    if first["type"] == "websocket.disconnect":
        return
    sink = QueueSink(asyncio.get_running_loop(), limits.max_queued_results, hub.metrics)
    try:
        request = parse_first(first.get("text"), limits, peer)
        if isinstance(request, str):
            await _watch(websocket, hub, request, sink)
            return
        if hub.count_from(peer) >= limits.max_streams_per_client:
            raise ProtocolError(f"at most {limits.max_streams_per_client} live streams per client")
        stream = hub.open(request, sink)
    except ProtocolError as exc:
        await _refuse(websocket, str(exc), "protocol")
        return
    await _run_stream(websocket, hub, limits, request, stream, sink)


async def _run_stream(
    websocket: WebSocket, hub: Hub, limits: Limits, spec: StreamSpec, stream: int, sink: QueueSink
) -> None:
    await websocket.send_text(json.dumps(_ready(hub, spec)))
    sender = asyncio.create_task(_send_all(websocket, sink, until_end=True))
    decoder = PcmDecoder(spec, limits)
    try:
        ended = await _receive_audio(websocket, hub, limits, stream, decoder)
    except ProtocolError as exc:
        sink.closed = True
        hub.end(stream)
        sender.cancel()
        hub.metrics.errors.labels("protocol").inc()
        await _refuse(websocket, str(exc))
        return
    if not ended:  # the client went away: nobody to send the rest to
        sink.closed = True
        hub.end(stream)
        sender.cancel()
        return
    hub.end(stream)
    try:
        await asyncio.wait_for(sender, END_TIMEOUT_S)
        await websocket.close(1000)
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
            parse_control(message["text"])
            return True


async def _send_all(websocket: WebSocket, sink: QueueSink, until_end: bool) -> None:
    while True:
        message = await sink.queue.get()
        await websocket.send_text(json.dumps(message))
        if until_end and message["type"] in ("end", "error"):
            return


async def _watch(websocket: WebSocket, hub: Hub, name: str, sink: QueueSink) -> None:
    """Send everything stream ``name`` produces (across its restarts) until the client leaves.
    Subscribed before "watching" is sent: what the stream produces meanwhile waits in the sink."""
    hub.watch(name, sink)
    live = any(s["name"] == name for s in hub.live())
    await websocket.send_text(json.dumps(dict(_model(hub), type="watching", stream=name, live=live)))
    sender = asyncio.create_task(_send_all(websocket, sink, until_end=False))
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # a watcher has nothing to say; whatever it sends is ignored
    finally:
        sink.closed = True
        hub.unwatch(name, sink)
        sender.cancel()


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


async def _refuse(websocket: WebSocket, message: str, reason: str | None = None) -> None:
    """A JSON error, then close this one connection (1008: policy violation)."""
    if reason:
        websocket.app.state.hub.metrics.errors.labels(reason).inc()
    try:
        await websocket.send_text(json.dumps({"type": "error", "error": message}))
        await websocket.close(1008)
    except (WebSocketDisconnect, RuntimeError):
        pass  # it is gone already
