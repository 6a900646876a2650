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
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from coaudio.serve import api, status
from coaudio.serve.hub import Hub
from coaudio.serve.protocol import Limits
from coaudio.serve.websocket import stream_endpoint

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def create_app(hub: Hub, history=None, token: str | None = None, limits: Limits | None = None) -> Starlette:
    """The application; ``history`` is a :class:`coaudio.serve.history.History` or None."""
    app = Starlette(
        routes=[
            Route("/", _page),
            WebSocketRoute("/ws", stream_endpoint),
            Route("/api/streams", api.streams),
            Route("/api/history", api.history),
            Route("/health", status.health),
            Route("/metrics", status.metrics),
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
