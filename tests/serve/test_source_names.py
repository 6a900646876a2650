"""A pulled source's name is its own for the server's lifetime: a WebSocket client that declares
a stream of that name is refused at once, while the source is down and while it streams, and
watching the name works. Real things throughout: a ``coaudio serve`` process pulling through
ffmpeg from a real HTTP server, real WebSocket clients, the SQLite history it writes.

(Before, a client that took the name while the URL was down kept the source locked out for
good, with advice the operator could not act on, and its session went into the history under
the source's name.)
"""

from __future__ import annotations

import json
import sqlite3
import urllib.request

import pytest
import soundfile

from tests.online.helpers import make_checkpoint, tone_mix
from tests.serve.helpers import running_server
from tests.serve.test_sources_helpers import AudioHttp, Route, Watcher, count, ffmpeg, needs_ffmpeg

ENV = {"COAUDIO_SOURCE_BACKOFF_S": "0.2"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("names") / "m.safetensors", hop_frames=20, window=6)


def _declare(ws_url: str, name: str) -> tuple[dict, int | None]:
    """A client declaring a stream ``name``: the server's first answer, and the close code when
    that answer is an error (the connection is then closed by the server)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    declaration = {"name": name, "sample_rate": 16_000, "channels": 1, "format": "s16le"}
    with connect(ws_url) as ws:
        ws.send(json.dumps(declaration))
        answer = json.loads(ws.recv(timeout=10))
        if answer["type"] != "error":
            return answer, None  # accepted: leaving closes it
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as closed:
            return answer, closed.rcvd.code if closed.rcvd else None
    raise AssertionError("the server sent more after its error")


@needs_ffmpeg
def test_a_client_cannot_take_a_pulled_sources_name_down_or_streaming(checkpoint, tmp_path):
    wav, mp3 = tmp_path / "a.wav", tmp_path / "a.mp3"
    soundfile.write(wav, tone_mix(5.0, 16_000, 1, seed=4), 16_000, subtype="PCM_16")
    ffmpeg("-i", wav, "-c:a", "libmp3lame", "-b:a", "96k", mp3)
    data, db = mp3.read_bytes(), tmp_path / "h.sqlite"
    with AudioHttp() as http:  # no route for /a.mp3 yet: 404, the radio is off the air
        source = ["--source", f"radio2={http.url('/a.mp3')}"]
        with running_server(checkpoint, "--db", db, *source, cwd=tmp_path, env=ENV) as server:
            watcher = Watcher(server.ws, "radio2")  # watching the name works (asserts "watching")
            watcher.wait_for(lambda m: count(m, "drop") >= 1, 30)
            down = _declare(server.ws, "radio2")
            # the radio comes up: half the file, then the connection is held (streaming on)
            http.routes["/a.mp3"] = Route(data, hang_after=len(data) // 2)
            http.routes["/a.mp3"].gate.set()
            watcher.wait_for(lambda m: count(m, "hop") >= 1, 60)
            streaming = _declare(server.ws, "radio2")
            health = json.load(urllib.request.urlopen(server.url + "health", timeout=10))
            other = _declare(server.ws, "radio3")  # any other name is still anyone's
            watcher.close()
            assert server.stop() == 130
        stderr = server.stderr
    for answer, code in (down, streaming):
        assert answer["type"] == "error" and code == 1008, answer
        assert (
            answer["error"]
            == "the name 'radio2' belongs to a pulled source of this server; pick another name"
        )
    assert other[0]["type"] == "ready"
    state = health["sources"]["radio2"]
    assert (state["state"], state["sessions"]) == ("streaming", 1), state
    assert "waiting to open its stream" not in stderr, stderr
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        kinds = conn.execute("SELECT kind FROM sessions WHERE name = 'radio2'").fetchall()
    assert kinds == [("url",)]  # the source's one session, no client's


def test_the_hub_keeps_a_reserved_name_for_its_source(checkpoint):
    """Straight at the hub: a client's stream (kind ws) of a reserved name is refused, the
    source's own (kind url) opens; the reservation outlives the source's sessions."""
    from coaudio.online.model import load_online
    from coaudio.serve.hub import Hub
    from coaudio.serve.protocol import ProtocolError, StreamSpec

    class Quiet:
        def deliver(self, messages: list[dict]) -> None:
            pass

    hub = Hub(load_online(checkpoint)).start()
    try:
        hub.reserve("radio")
        client = StreamSpec("radio", 16_000, kind="ws", source="127.0.0.1")
        with pytest.raises(ProtocolError, match="belongs to a pulled source"):
            hub.open(client, Quiet())
        pulled = hub.open(StreamSpec("radio", 16_000, kind="url", source="http://x/"), Quiet())
        hub.end(pulled)
        with pytest.raises(ProtocolError, match="belongs to a pulled source"):
            hub.open(client, Quiet())
        hub.end(hub.open(StreamSpec("radio-2", 16_000, kind="ws", source="127.0.0.1"), Quiet()))
    finally:
        hub.stop()
