"""The ASGI application of ``coaudio serve`` (Starlette): ``/ws``, the live page, the JSON API.

Routes::

    GET  /                  the live page (static HTML/JS, no build step)
    WS   /ws                a stream (or a watcher of one): see coaudio.serve.protocol
    GET  /api/streams       ?stream=&limit= live streams, then the newest ended sessions from the
                            history (default 100, at most 1000; ended_left_out: how many more)
    GET  /api/history       ?stream=&since=&until=&limit=&format=json|csv (JSON: the newest
                            10,000 rows unless limit= says otherwise; a limit above 100,000 is a
                            400; CSV: all). A bad parameter is a 400 {"error": "..."} saying why
    GET  /health            {"status": "ok" | "degraded", "sources": {NAME: {"state", ...}}, ...}
                            (always 200: see coaudio.serve.status)
    GET  /metrics           Prometheus text

In front of them :class:`coaudio.serve.gate.Gate` checks Host, Origin and the token.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from coaudio.serve import api, status
from coaudio.serve.drain import Drain
from coaudio.serve.gate import Gate
from coaudio.serve.hub import Hub
from coaudio.serve.protocol import Limits
from coaudio.serve.websocket import stream_endpoint

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def create_app(
    hub: Hub,
    history=None,
    token: str | None = None,
    limits: Limits | None = None,
    allowed_hosts=None,
    allowed_origins=(),
) -> Gate:
    """The application behind its gate; ``history`` is a :class:`coaudio.serve.history.History`
    or None; ``allowed_hosts`` None lets any Host header through (see :class:`Gate`)."""
    app = Starlette(
        routes=[
            Route("/", _page),
            WebSocketRoute("/ws", stream_endpoint),
            Route("/api/streams", api.streams),
            Route("/api/history", api.history),
            Route("/health", status.health),
            Route("/metrics", status.metrics),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={404: _not_found},
    )
    app.state.hub, app.state.history, app.state.limits = hub, history, limits or hub.limits
    app.state.drain = Drain()
    app.state.watchers = {}  # remote address -> watching connections (event loop only)
    return Gate(app, token, allowed_hosts, allowed_origins)


async def _not_found(request: Request, exc) -> Response:
    """JSON like every other answer; the WebSocket endpoint asked for over plain HTTP says so."""
    if request.url.path == "/ws":
        why = "/ws is a WebSocket endpoint: connect with ws://HOST:PORT/ws (see the README's protocol)"
        return JSONResponse({"error": why}, status_code=426, headers={"upgrade": "websocket"})
    return JSONResponse({"error": f"no such route: {request.url.path}"}, status_code=404)


async def _page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})
