"""``/api/streams`` and ``/api/history`` of a real server: bounds, filters, the fields of ended
sessions, sessions of a SIGKILLed server, and bad parameters."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request

import pytest

from coaudio.online.model import load_online
from coaudio.serve.api import HISTORY_MAX, STREAMS_LIMIT, STREAMS_MAX
from coaudio.serve.history import History, HistoryReader
from tests.online.helpers import make_checkpoint, tone_mix
from tests.serve.helpers import hops, inprocess_server, pcm_bytes, running_server
from tests.serve.history_writer import record

ENDED = STREAMS_LIMIT + 30  # ended sessions in the history: more than one answer lists


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("api") / "m.safetensors", hop_frames=20, window=6)


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """An in-process server over a history of ENDED ended sessions ("even" and "odd" by turns)."""
    history = History(tmp_path_factory.mktemp("api-db") / "h.sqlite")
    for i in range(ENDED):
        session = history.open_stream("even" if i % 2 == 0 else "odd", "websocket", "x", 16_000, 1, "m")
        history.add(session, [record(h, t0=time.time()) for h in range(i % 3 + 1)])
        history.end_stream(session)
    history.flush()
    with inprocess_server(load_online(checkpoint), history=history) as running:
        yield running
    history.close()


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_streams_lists_the_newest_ended_sessions_and_says_how_many_it_left_out(server):
    status, body = _get(server.url + "api/streams")
    assert status == 200 and body["limit"] == STREAMS_LIMIT
    assert body["ended"] == STREAMS_LIMIT and body["ended_left_out"] == ENDED - STREAMS_LIMIT
    sessions = [s["session"] for s in body["streams"]]
    assert sessions == sorted(sessions, reverse=True) and sessions[0] == ENDED  # newest first
    ended = body["streams"][0]
    assert ended["audio_s"] == record((ENDED - 1) % 3)["end_s"] and ended["confidence"] is not None
    assert ended["ended_by"] is None and not ended["live"]


@pytest.mark.parametrize(
    "query,names,shown,left_out",
    [
        ("?limit=5", {"even", "odd"}, 5, ENDED - 5),
        ("?stream=odd", {"odd"}, ENDED // 2, 0),
        ("?stream=even&limit=3", {"even"}, 3, ENDED // 2 - 3),
        ("?stream=nobody", set(), 0, 0),
        (f"?limit={STREAMS_MAX}", {"even", "odd"}, ENDED, 0),
    ],
)
def test_streams_take_limit_and_stream(server, query, names, shown, left_out):
    status, body = _get(server.url + "api/streams" + query)
    assert status == 200
    assert {s["name"] for s in body["streams"]} == names
    assert (body["ended"], body["ended_left_out"]) == (shown, left_out) == (len(body["streams"]), left_out)


@pytest.mark.parametrize(
    "path,words",
    [
        ("api/streams?limit=abc", "limit must be a whole number, got 'abc'"),
        ("api/streams?limit=0", "limit must be at least 1"),
        (f"api/streams?limit={STREAMS_MAX + 1}", f"limit must be at most {STREAMS_MAX}"),
        ("api/history?limit=abc", "limit must be a whole number, got 'abc'"),
        ("api/history?limit=-3", "limit must be at least 1"),
        (f"api/history?limit={HISTORY_MAX * 5}", f"limit must be at most {HISTORY_MAX} in JSON"),
        ("api/history?since=1h&until=2h", "since ('1h') must be before until ('2h')"),
        ("api/history?since=10&until=10", "must be before until"),
        ("api/history?since=yesterday", "since: cannot read 'yesterday' as a time"),
        ("api/history?format=xml", "format must be json or csv"),
    ],
)
def test_bad_parameters_are_a_400_that_says_why(server, path, words):
    status, body = _get(server.url + path)
    assert status == 400 and words in body["error"]


def test_history_limit_within_bounds_and_csv_without_one(server):
    status, body = _get(server.url + f"api/history?limit={HISTORY_MAX}&stream=odd")
    assert (
        status == 200
        and body["limit"] == HISTORY_MAX
        and body["count"] == sum(i % 3 + 1 for i in range(1, ENDED, 2))
    )
    url = server.url + f"api/history?format=csv&limit={HISTORY_MAX * 5}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.read().decode().count("\n") == 1 + sum(i % 3 + 1 for i in range(ENDED))


def test_a_live_and_an_ended_entry_have_the_same_fields_with_values(server):
    import websockets

    async def while_live():
        async with websockets.connect(server.url.replace("http", "ws", 1) + "ws") as ws:
            await ws.send(json.dumps({"name": "now", "sample_rate": 16_000, "format": "s16le"}))
            await ws.recv()
            await ws.send(pcm_bytes(tone_mix(3.0, 16_000), "s16le"))
            received = []
            while len([h for h in hops(received) if h["label"] is not None]) < 2:
                received.append(json.loads(await ws.recv()))
            return _get(server.url + "api/streams?limit=1")[1]

    body = asyncio.run(while_live())
    live, ended = body["streams"]
    assert live["live"] and live["name"] == "now" and body["live"] == 1 and not ended["live"]
    assert set(live) == set(ended)
    for key in ("audio_s", "confidence", "label", "time", "hops", "started", "ended"):
        assert ended[key] is not None, key


def _stream_until_stored(server, db, name: str) -> None:
    """A client streams ``name`` until some of its hops are committed to ``db``; it stays
    connected (the server is killed under it)."""
    import websockets

    async def client():
        ws = await websockets.connect(server.ws)
        await ws.send(json.dumps({"name": name, "sample_rate": 16_000, "format": "s16le"}))
        await ws.send(pcm_bytes(tone_mix(4.0, 16_000), "s16le"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with HistoryReader(db) as reader:
                stored = reader.streams(name)
            if stored and stored[0]["hops"] >= 3:
                return ws
            await asyncio.sleep(0.1)
        raise AssertionError("no hops reached the history")

    return asyncio.run(client())


def test_sessions_of_a_sigkilled_server_are_closed_by_the_next_one(checkpoint, tmp_path):
    db = tmp_path / "h.sqlite"
    with running_server(checkpoint, "--db", db, cwd=tmp_path) as first:
        _stream_until_stored(first, db, "cut")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
    with HistoryReader(db) as reader:
        (left,) = reader.streams("cut")
    assert left["ended"] is None  # what SIGKILL leaves
    with running_server(checkpoint, "--db", db, cwd=tmp_path) as second:
        body = _get(second.url + "api/streams")[1]
    (entry,) = [s for s in body["streams"] if s["name"] == "cut"]
    assert entry["ended_by"] == "crash" and entry["ended"] == left["last_time"]  # its newest hop
    assert (
        entry["audio_s"] == round(left["last_end_s"], 3) > 0
        and entry["confidence"] == left["last_confidence"]
    )
    assert entry["hops"] == left["hops"] and entry["label"] == left["last_label"]
