"""Who may talk to ``coaudio serve``: the Host and Origin checks and the bearer token (ASGI).

Loopback is not private to this machine's own programs: any web page open in a local browser
can point a WebSocket at ``ws://127.0.0.1:8750/ws`` (browsers let pages open WebSockets to any
origin) and a hostile site can make its own name resolve to 127.0.0.1 (DNS rebinding) to read
``/api/history``. So a server on loopback answers only requests whose ``Host`` is a loopback
name (a rebinding site's requests carry its own name), and every server refuses WebSockets
from a web page of another origin unless ``allowed_origins`` lists it. Programs that are not
browsers send no ``Origin`` and are not affected. A token (``Authorization: Bearer TOKEN`` or
``?token=TOKEN``) is needed on every route but the page's static files when one is set.

A refused WebSocket gets the HTTP answer a refused request gets (status and a JSON body saying
why), where the server supports it (uvicorn does), instead of a bare 403.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs, urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
TOKEN_HINT = "a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN"


class Gate:
    """ASGI middleware in front of the app: Host, then Origin (WebSockets), then the token.

    ``allowed_hosts``: host names (no port) a request's ``Host`` may carry; None: any (a
    server on a public address, guarded by its token). ``allowed_origins``: origins
    (``scheme://host[:port]``) of other web pages that may open WebSockets.
    """

    def __init__(self, app, token: str | None, allowed_hosts=None, allowed_origins=()) -> None:
        self.app, self.state = app, app.state
        self.token = token.encode() if token else None
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.refusal(scope)
            if refusal is not None:
                await _refuse(scope, send, *refusal)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope) -> tuple[int, str] | None:
        """(HTTP status, why) when the request may not pass; None when it may."""
        headers = {name: value.decode("latin-1") for name, value in scope.get("headers", ())}
        host = headers.get(b"host")
        if host is not None and self.allowed_hosts is not None and _hostname(host) not in self.allowed_hosts:
            port = (scope.get("server") or ("", 8750))[1]
            return 403, f"Host {host!r} is not this server's; open it as http://localhost:{port}/"
        origin = headers.get(b"origin")
        if scope["type"] == "websocket" and origin is not None and not self._origin_allowed(origin, host):
            return 403, f"WebSockets from pages of {origin!r} are not allowed (coaudio serve --allow-origin)"
        if self.token is not None and not scope["path"].startswith("/static/"):
            offered = _offered_token(scope, headers)
            if not hmac.compare_digest(offered, self.token):
                return 401, TOKEN_HINT if not offered else "the token is wrong"
        return None

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (a file:// page, a sandboxed frame) and anything odd
        if host is not None and parts.netloc == host.lower():
            return True  # the server's own page
        return self.allowed_hosts is not None and _hostname(parts.netloc) in self.allowed_hosts


def _hostname(netloc: str) -> str:
    """``host[:port]`` -> host, lower case, IPv6 without brackets."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _offered_token(scope, headers: dict) -> bytes:
    authorization = headers.get(b"authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip().encode("latin-1")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("token", [""])[0].encode("latin-1", "replace")


async def _refuse(scope, send, status: int, why: str) -> None:
    body = json.dumps({"error": why}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})  # a bare 403
            return
        prefix = "websocket."
    else:
        prefix = ""
    await send({"type": prefix + "http.response.start", "status": status, "headers": headers})
    await send({"type": prefix + "http.response.body", "body": body})
