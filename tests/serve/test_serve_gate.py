"""Who may talk to the server: loopback answers loopback names only (DNS rebinding), web pages
of other origins may not open WebSockets, a missing token is refused with a reason."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
from urllib.parse import urlsplit

import pytest
import websockets

from coaudio.online.model import load_online
from tests.online.helpers import make_checkpoint
from tests.serve.helpers import coaudio_serve_exit, inprocess_server, ws_url

GOOD = {"sample_rate": 16_000, "channels": 1, "format": "s16le"}
NAMES = itertools.count()


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    return load_online(make_checkpoint(tmp_path_factory.mktemp("gate") / "m.safetensors", hop_frames=20))


@pytest.fixture(scope="module")
def server(online):
    with inprocess_server(online, allowed_origins=("https://console.example.org",)) as running:
        yield running


def _get(url: str, path: str, host: str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """GET ``path`` with this Host header (a DNS-rebinding page's requests carry its own name)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        conn.putheader("Host", host)
    for name, value in (headers or {}).items():
        conn.putheader(name, value)
    conn.endheaders()
    answer = conn.getresponse()
    body = answer.read()
    conn.close()
    return answer.status, json.loads(body) if body.startswith(b"{") else {}


def _connect(url: str, origin: str | None = None, **query) -> dict:
    """The first answer to a declaration; or the refusal: {"status": ..., "body": ...}."""

    async def talk():
        try:
            async with websockets.connect(ws_url(url, **query), origin=origin) as ws:
                await ws.send(json.dumps(dict(GOOD, name=f"s{next(NAMES)}")))
                return json.loads(await ws.recv())
        except websockets.InvalidStatus as refused:
            return {"status": refused.response.status_code, "body": json.loads(refused.response.body)}

    return asyncio.run(talk())


def test_loopback_answers_only_loopback_names(server):
    port = urlsplit(server.url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        assert _get(server.url, "/api/streams", host)[0] == 200, host
    status, body = _get(server.url, "/api/history", f"rebind.attacker.example:{port}")
    assert status == 403 and "rebind.attacker.example" in body["error"]


def test_websockets_from_other_web_pages_are_refused_with_a_reason(server):
    port = urlsplit(server.url).port
    assert _connect(server.url)["type"] == "ready"  # programs send no Origin
    assert _connect(server.url, f"http://127.0.0.1:{port}")["type"] == "ready"  # the server's own page
    assert _connect(server.url, "http://localhost:3000")["type"] == "ready"  # a page of this machine
    assert _connect(server.url, "https://console.example.org")["type"] == "ready"  # --allow-origin
    for origin in ("https://evil.example", "null", "http://localhost.evil.example"):
        refused = _connect(server.url, origin)
        assert refused["status"] == 403 and "allow-origin" in refused["body"]["error"], origin


def test_a_missing_token_is_refused_with_a_reason(online):
    with inprocess_server(online, token="s3cret-token") as running:
        refused = _connect(running.url)
        assert refused["status"] == 401 and "Bearer" in refused["body"]["error"]
        assert _connect(running.url, token="wrong-token")["status"] == 401
        assert _connect(running.url, token="s3cret-token")["type"] == "ready"
        assert _get(running.url, "/health", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        assert _get(running.url, "/static/app.js")[0] == 200  # the page's code holds no data


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--host", ""), "'--host': the address is empty"),
        (("--host", "999.1.1.1", "--token", "long-enough-token"), "'--host': 999.1.1.1 is not an IP address"),
        (("--host", "0.0.0.0", "--token", "   "), "'--token': the token is empty or only spaces"),
        (("--host", "0.0.0.0", "--token", "short"), "'--token': the token is 5 characters long"),
        (("--host", "0.0.0.0", "--token", "has space inside"), "'--token': the token has spaces"),
        (("--host", "0.0.0.0"), "'--host': 0.0.0.0 is reachable from other machines"),
        (("--allow-origin", "evil.example"), "'--allow-origin': give an origin as http(s)://host[:port]"),
    ],
)
def test_odd_hosts_and_tokens_are_named(tmp_path, args, says):
    code, stderr = coaudio_serve_exit(tmp_path / "missing.safetensors", *args)
    assert code == 2 and says in " ".join(stderr.split()), stderr


def test_a_wrong_token_is_told_apart_from_a_missing_one(online):
    with inprocess_server(online, token="s3cret-token") as running:
        status, body = _get(running.url, "/health", headers={"Authorization": "Bearer not-the-token"})
        assert status == 401 and body["error"] == "the token is wrong"
        status, body = _get(running.url, "/health")
        assert status == 401 and "Bearer" in body["error"]


def test_the_host_refusal_names_the_real_port(server):
    port = urlsplit(server.url).port
    status, body = _get(server.url, "/health", "evil.example")
    assert status == 403 and f"http://localhost:{port}/" in body["error"]


def test_unknown_routes_and_parameters_answer_in_json(server):
    assert _get(server.url, "/nothing") == (404, {"error": "no such route: /nothing"})
    status, body = _get(server.url, "/ws")  # plain HTTP to the WebSocket endpoint
    assert status == 426 and "ws://" in body["error"]
    status, body = _get(server.url, "/api/streams?since=1h")
    assert status == 400 and "unknown parameter(s) since" in body["error"]


def test_a_bracketed_ipv6_loopback_is_an_address(tmp_path):
    code, stderr = coaudio_serve_exit(tmp_path / "missing.safetensors", "--host", "[::1]")
    assert code != 2 and "not an IP address" not in stderr  # it gets as far as the checkpoint


def test_bytes_that_are_not_http_get_a_warning_line_like_every_other(tmp_path):
    """uvicorn's own warnings go through coaudio's logging: `warning: ...` on stderr, like the
    rest (uvicorn's format was `WARNING:  ...`)."""
    import socket

    from tests.serve.helpers import running_server

    checkpoint = make_checkpoint(tmp_path / "m.safetensors", hop_frames=20)
    with running_server(checkpoint, "--no-db", cwd=tmp_path) as server:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")  # e.g. TLS to a plain-HTTP port
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400")
        assert server.stop() == 130
    lines = server.stderr.splitlines()
    assert "warning: Invalid HTTP request received." in lines, server.stderr
    assert not [line for line in lines if line.startswith("WARNING")], server.stderr
