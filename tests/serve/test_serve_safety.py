"""Bad clients, limits and tokens: each closes only its own connection, with a JSON error."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
import websockets

from coaudio.online.model import load_online
from coaudio.serve.protocol import Limits
from tests.online.helpers import make_checkpoint, tone_mix
from tests.serve.helpers import coaudio_serve_exit, hops, inprocess_server, pcm_bytes, send_stream, ws_url

LIMITS = Limits(
    max_message_bytes=64_000,
    max_streams=3,
    max_streams_per_client=2,
    max_queued_results=64,  # above the burst a fast reader can get: max_backlog_s of hops
    max_backlog_s=2.0,
    hello_timeout_s=1.0,
)
GOOD = {"name": "ok", "sample_rate": 16_000, "channels": 1, "format": "s16le"}


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    return load_online(make_checkpoint(tmp_path_factory.mktemp("safety") / "m.safetensors", hop_frames=20))


@pytest.fixture(scope="module")
def server(online):
    with inprocess_server(online, LIMITS) as running:
        yield running


async def _error_of(url: str, *messages) -> tuple[dict, int]:
    """Send ``messages`` (dict -> JSON text, bytes as they are); the error and the close code."""
    async with websockets.connect(url) as ws:
        for message in messages:
            await ws.send(json.dumps(message) if isinstance(message, dict) else message)
        replies = []
        try:
            async for reply in ws:
                replies.append(json.loads(reply))
        except websockets.ConnectionClosedError:
            pass
        return [r for r in replies if r["type"] == "error"][0], ws.close_code


@pytest.mark.parametrize(
    "first, says",
    [
        (b"\x00\x01", "JSON text"),
        ("hello", "not JSON"),
        ("[1, 2]", "JSON object"),
        ("[" * 20_000 + "]" * 20_000, "nested too deeply"),
        ('{"name": "a", "sample_rate": ' + "1" * 5000 + "}", "too many digits"),
        ({"name": "a"}, "lacks sample_rate"),
        ({"name": "no spaces", "sample_rate": 16_000}, "stream name"),
        ({"name": "a", "sample_rate": 1_000}, "between 4000 and 192000"),
        ({"name": "a", "sample_rate": 16_000, "channels": 9}, "channels must be between 1 and 8"),
        ({"name": "a", "sample_rate": 16_000, "format": "mp3"}, "format must be one of s16le, f32le"),
        ({"name": "a", "sample_rate": "16k"}, "sample_rate must be an integer"),
        ({"name": "a", "sample_rate": 16_000, "rate": 1}, "unknown field(s) rate"),
        ('{"name": "' + "a" * 70_000 + '"}', "JSON messages are at most 65536"),
        ({"watch": "a", "colour": "red"}, 'a watch request is {"watch": NAME} alone; it also has colour'),
    ],
)
def test_a_bad_declaration_gets_a_json_error(server, first, says):
    error, code = asyncio.run(_error_of(ws_url(server.url), first))
    assert says in error["error"] and code == 1008


@pytest.mark.parametrize(
    "after, says",
    [
        ("more", "not JSON"),
        ({"stop": True}, 'only be {"end": true}'),
        (b"\x00" * 70_000, "exceeds the limit of 64000"),
        ('{"end": true' + " " * 70_000 + "}", "JSON messages are at most 65536"),
    ],
)
def test_bad_messages_after_the_declaration(server, after, says):
    error, code = asyncio.run(_error_of(ws_url(server.url), GOOD, b"\x00\x00" * 100, after))
    assert says in error["error"] and code == 1008


def test_a_message_past_the_websocket_layer_limit_closes_with_1009(server):
    """Twice max_message_bytes is where the WebSocket layer stops reading (no JSON then: the
    message is never read whole); the close code says it."""

    async def scenario():
        async with websockets.connect(ws_url(server.url), max_size=None) as ws:
            await ws.send(json.dumps(dict(GOOD, name="huge")))
            await ws.recv()  # ready
            await ws.send(b"\x00" * (2 * LIMITS.max_message_bytes + 2))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()
            return ws.close_code, ws.close_reason

    code, reason = asyncio.run(scenario())
    assert code == 1009, reason


def test_a_client_that_reconnects_at_once_under_its_name_is_let_in(server):
    """It left without {"end": true}; the stream it left is still being flushed when it is back."""
    audio = pcm_bytes(tone_mix(3.0, 16_000), "s16le")

    async def scenario():
        answers = []
        for _ in range(5):
            async with websockets.connect(ws_url(server.url)) as ws:
                await ws.send(json.dumps(dict(GOOD, name="again")))
                answers.append(json.loads(await ws.recv()))
                for at in range(0, len(audio), 32_000):  # under the 64,000-byte limit
                    await ws.send(audio[at : at + 32_000])
                ws.transport.abort()  # gone, no closing handshake
        async with websockets.connect(ws_url(server.url)) as ws:  # and a last one that ends well,
            await ws.send(json.dumps(dict(GOOD, name="again")))  # so that no stream lingers
            answers.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"end": True}))
            async for message in ws:
                if json.loads(message)["type"] == "end":
                    break
        return answers

    answers = asyncio.run(scenario())
    assert [a["type"] for a in answers] == ["ready"] * 6, answers


def test_watchers_per_client_are_limited(online):
    async def scenario(running):
        opened = []
        try:
            for _ in range(3):
                ws = await websockets.connect(ws_url(running.url))
                opened.append(ws)
                await ws.send(json.dumps({"watch": "w"}))
            return [json.loads(await ws.recv()) for ws in opened]
        finally:
            for ws in opened:
                await ws.close()

    with inprocess_server(online, Limits(max_watchers_per_client=2)) as running:
        answers = asyncio.run(scenario(running))
    assert [a["type"] for a in answers] == ["watching", "watching", "error"]
    assert answers[2]["error"] == "at most 2 watchers per client"


def test_non_finite_float_audio_is_refused(server):
    nan = np.array([0.1, np.nan, 0.2], dtype="<f4").tobytes()
    error, _ = asyncio.run(_error_of(ws_url(server.url), dict(GOOD, format="f32le"), nan))
    assert "NaN or infinite" in error["error"]


def test_a_silent_client_is_closed_after_the_declaration_timeout(server):
    async def silent():
        async with websockets.connect(ws_url(server.url)) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert "no declaration within 1 s" in asyncio.run(silent())["error"]


def test_names_and_stream_limits(server):
    async def scenario():
        async with websockets.connect(ws_url(server.url)) as first:
            await first.send(json.dumps(dict(GOOD, name="taken")))
            assert json.loads(await first.recv())["type"] == "ready"
            same, _ = await _error_of(ws_url(server.url), dict(GOOD, name="taken"))
            async with websockets.connect(ws_url(server.url)) as second:
                await second.send(json.dumps(dict(GOOD, name="second")))
                await second.recv()
                third, _ = await _error_of(ws_url(server.url), dict(GOOD, name="third"))
            return same, third

    same, third = asyncio.run(scenario())
    assert "already live" in same["error"]
    assert "at most 2 live streams per client" in third["error"]


def test_the_server_keeps_serving_after_bad_clients(server):
    audio = tone_mix(2.0, 16_000)
    messages = asyncio.run(send_stream(ws_url(server.url), "after", pcm_bytes(audio, "s16le"), 16_000))
    assert len(hops(messages)) > 0 and messages[-1]["type"] == "end"


def test_a_stalled_client_does_not_delay_others(server):
    """A client that never reads its results (its socket window is tiny and it stops reading):
    another client meanwhile gets every hop, none dropped."""
    long_audio = pcm_bytes(tone_mix(60.0, 16_000, seed=1), "s16le")
    short_audio = pcm_bytes(tone_mix(4.0, 16_000, seed=2), "s16le")

    async def scenario():
        sock = socket.create_connection(("127.0.0.1", server.sock.getsockname()[1]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        async with websockets.connect(ws_url(server.url), sock=sock, max_queue=1) as ws:
            await ws.send(json.dumps(dict(GOOD, name="stalled", spectrogram=True)))
            for at in range(0, len(long_audio), 32_000):
                await ws.send(long_audio[at : at + 32_000])
            others = await send_stream(ws_url(server.url), "reader", short_audio, 16_000)
            ws.transport.abort()  # it never reads: no closing handshake either
            return others

    others = asyncio.run(scenario())
    assert others[-1]["summary"]["dropped"] == 0 and len(hops(others)) == others[-1]["summary"]["hops"] == 16


def test_results_a_client_cannot_take_are_dropped_and_counted():
    """The per-client queue: full -> the newest result is dropped (counted); the end message
    always gets in, pushing out the oldest, and carries the count."""
    from coaudio.serve.metrics import ServerMetrics
    from coaudio.serve.websocket import QueueSink

    async def scenario():
        metrics = ServerMetrics()
        sink = QueueSink(asyncio.get_running_loop(), 3, metrics)
        sink.deliver([{"type": "hop", "hop": i} for i in range(5)])
        sink.deliver([{"type": "end", "end": True, "summary": {"hops": 5}}])
        await asyncio.sleep(0.05)  # deliver() hands over through the loop, as from the hub thread
        queued = [sink.queue.get_nowait() for _ in range(sink.queue.qsize())]
        return queued, metrics.dropped_total

    queued, dropped = asyncio.run(scenario())
    assert [m.get("hop") for m in queued] == [1, 2, None]
    assert queued[-1]["summary"] == {"hops": 5, "dropped": 3} and dropped == 3


def test_a_token_guards_every_route_and_the_websocket(online):
    with inprocess_server(online, token="s3cret-token") as running:
        url = running.url
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "health", timeout=10)
        assert refused.value.code == 401
        bearer = urllib.request.Request(url + "health", headers={"Authorization": "Bearer s3cret-token"})
        assert json.load(urllib.request.urlopen(bearer, timeout=10))["status"] == "ok"
        assert urllib.request.urlopen(url + "api/streams?token=s3cret-token", timeout=10).status == 200
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "api/streams?token=wrong", timeout=10)
        assert urllib.request.urlopen(url + "static/index.html", timeout=10).status == 200  # no data

        async def connect(**query):
            async with websockets.connect(ws_url(url, **query)) as ws:
                await ws.send(json.dumps(GOOD))
                return json.loads(await ws.recv())

        with pytest.raises(websockets.InvalidStatus):
            asyncio.run(connect())
        assert asyncio.run(connect(token="s3cret-token"))["type"] == "ready"


def test_a_non_loopback_address_needs_a_token(tmp_path):
    code, stderr = coaudio_serve_exit(tmp_path / "missing.safetensors", "--host", "0.0.0.0")
    assert code == 2 and "reachable from other machines" in stderr and "--token" in stderr
