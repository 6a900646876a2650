"""The ASGI application of ``coaudio serve`` (Starlette): ``/ws``, the live page, the JSON API.

Routes::

    GET  /                  the live page (static HTML/JS, no build step)
    WS   /ws                a stream (or a watcher of one): see coaudio.serve.protocol
    GET  /api/streams       live streams and past ones from the history
    GET  /api/history       ?stream=&since=&until=&limit=&format=json|csv (JSON: the newest
                            10,000 rows unless limit= says otherwise, at most 100,000; CSV: all)
    GET  /health            {"status": "ok", ...}
    GET  /metrics           Prometheus text

With a token every route but the page's static files needs it, as ``Authorization: Bearer
TOKEN`` or, where a browser cannot set headers (WebSocket, the page's own address),
``?token=TOKEN``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from coaudio.serve.hub import Hub
from coaudio.serve.protocol import Limits
from coaudio.serve.websocket import stream_endpoint

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HISTORY_LIMIT = 10_000  # rows of a JSON /api/history answer without ?limit= (the newest)
HISTORY_MAX = 100_000  # rows one JSON answer holds at most (~100 MB to build); CSV streams any number


def create_app(hub: Hub, history=None, token: str | None = None, limits: Limits | None = None) -> Starlette:
    """The application; ``history`` is a :class:`coaudio.serve.history.History` or None."""
    app = Starlette(
        routes=[
            Route("/", _page),
            WebSocketRoute("/ws", stream_endpoint),
            Route("/api/streams", _streams),
            Route("/api/history", _history),
            Route("/health", _health),
            Route("/metrics", _metrics),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    app.state.hub, app.state.history, app.state.limits = hub, history, limits or hub.limits
    return TokenGate(app, token) if token else app


class TokenGate:
    """ASGI middleware: every request and WebSocket must carry the token (static files need not:
    they hold no data)."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token.encode()
        self.state = app.state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket") and not scope["path"].startswith("/static/"):
            if not self._allowed(scope):
                await _refuse(scope, send)
                return
        await self.app(scope, receive, send)

    def _allowed(self, scope) -> bool:
        offered = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                offered = value[7:].strip()
        if not offered:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            offered = query.get("token", [""])[0].encode()
        return hmac.compare_digest(offered, self.token)


async def _refuse(scope, send) -> None:
    if scope["type"] == "websocket":  # closing before accepting: the client sees HTTP 403
        await send({"type": "websocket.close", "code": 1008, "reason": "a token is needed"})
        return
    body = b'{"error": "a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


async def _streams(request: Request) -> Response:
    hub, history = request.app.state.hub, request.app.state.history
    live = [dict(s, live=True, ended=None) for s in hub.live()]
    past = []
    if history is not None:  # sessions that ended (a live one is in the history too, still open)
        past = [_past(s) for s in await run_in_threadpool(history.streams) if s.get("ended")]
    return JSONResponse({"streams": live + past})


def _past(session: dict) -> dict:
    """A history session in the shape of a live stream's entry (newest hop as label/time)."""
    entry = {key: session[key] for key in ("name", "kind", "source", "sample_rate", "channels", "started")}
    entry.update(
        session=session["id"],
        hops=session["hops"],
        audio_s=None,  # not kept by the history
        label=session["last_label"],
        confidence=None,
        time=session["last_time"],
        ended=session["ended"],
        live=False,
    )
    return entry


async def _history(request: Request) -> Response:
    history = request.app.state.history
    if history is None:
        return _error(404, "this server keeps no history (started with --no-db)")
    from coaudio.serve.history_query import parse_time

    query = request.query_params
    try:
        since = parse_time(query["since"]) if query.get("since") else None
        until = parse_time(query["until"]) if query.get("until") else None
        limit = int(query["limit"]) if query.get("limit") else None
    except ValueError as exc:
        return _error(400, str(exc))
    if limit is not None and limit < 1:
        return _error(400, "limit must be at least 1")
    fmt = query.get("format") or ("csv" if "text/csv" in request.headers.get("accept", "") else "json")
    if fmt not in ("json", "csv"):
        return _error(400, f"format must be json or csv, got {fmt!r}")
    stream = query.get("stream") or None
    if fmt == "csv":
        return StreamingResponse(_csv_rows(history.path, stream, since, until, limit), media_type="text/csv")
    limit = min(limit or HISTORY_LIMIT, HISTORY_MAX)
    rows = await run_in_threadpool(history.query, stream, since, until, limit)
    return JSONResponse({"rows": rows, "count": len(rows), "limit": limit})


def _csv_rows(path, stream, since, until, limit) -> Iterator[str]:
    """CSV lines read one row at a time from a read-only connection of the response's own (any
    number of rows in constant memory; Starlette runs the iterator in its thread pool)."""
    from coaudio.serve.history_query import HistoryReader, csv_header, csv_lines

    reader = HistoryReader(path)
    try:
        yield csv_header()
        yield from csv_lines(reader.iter_query(stream, since, until, limit))
    finally:
        reader.close()


async def _health(request: Request) -> Response:
    hub, history = request.app.state.hub, request.app.state.history
    metrics, online = hub.metrics, hub.online
    body = {
        "status": "ok",
        "uptime_s": round(time.time() - metrics.started, 3),
        "streams": len(hub.ids()),
        "model": {
            "source": online.source,
            "labels": online.labels,
            "frontend": online.frontend.kind,
        },
        **{k: round(v, 3) for k, v in metrics.recent().items()},
        "results_dropped": metrics.dropped_total,
    }
    if history is not None:
        body["history"] = history.stats()
    return JSONResponse(body)


async def _metrics(request: Request) -> Response:
    return Response(
        request.app.state.hub.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
