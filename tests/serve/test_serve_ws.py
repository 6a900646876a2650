"""``coaudio serve`` over WebSocket: several real clients at once get what ``coaudio stream`` gives."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import soundfile

from tests.online.helpers import LABELS, hops_of, make_checkpoint, probs_of, tone_mix
from tests.serve.helpers import hops, pcm_bytes, running_server, send_stream, stream_cli

# (sample rate, channels, format, seconds): rates that need resampling, stereo, both formats
STREAMS = [
    (16_000, 1, "s16le", 7.0),
    (44_100, 2, "s16le", 6.0),
    (22_050, 1, "f32le", 8.0),
    (8_000, 1, "s16le", 5.0),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "m.safetensors", hop_frames=20, window=6)


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("cwd")
    with running_server(checkpoint, "--no-db", cwd=elsewhere) as server:
        yield server


def _audio(tmp_path, index, rate, channels, fmt, seconds):
    """A real audio file and the PCM a client would send of it (the same samples)."""
    audio = tone_mix(seconds, rate, channels, seed=index)
    path = tmp_path / f"s{index}.wav"
    soundfile.write(path, audio, rate, subtype="PCM_16" if fmt == "s16le" else "FLOAT")
    samples = soundfile.read(path, dtype="float32", always_2d=True)[0]
    return path, pcm_bytes(samples, fmt)


def test_concurrent_clients_equal_one_coaudio_stream_each(server, checkpoint, tmp_path):
    files = [_audio(tmp_path, i, *spec) for i, spec in enumerate(STREAMS)]
    references = [stream_cli(checkpoint, path, len(LABELS)) for path, _ in files]

    async def everyone():
        return await asyncio.gather(
            *(
                send_stream(server.ws, f"client{i}", pcm, rate, channels, fmt, seed=i, top_k=len(LABELS))
                for i, ((_, pcm), (rate, channels, fmt, _)) in enumerate(zip(files, STREAMS))
            )
        )

    results = asyncio.run(everyone())
    for i, (messages, reference) in enumerate(zip(results, references)):
        stdout, stderr = reference.communicate(timeout=120)
        assert reference.returncode == 0, stderr.decode()
        expected, got = hops_of(stdout), hops(messages)
        assert messages[0]["type"] == "ready" and messages[0]["labels"] == LABELS
        assert [h["hop"] for h in got] == [h["hop"] for h in expected], f"stream {i}"
        assert [h["label"] for h in got] == [h["label"] for h in expected]
        assert [(h["start_s"], h["end_s"]) for h in got] == [(h["start_s"], h["end_s"]) for h in expected]
        np.testing.assert_allclose(probs_of(got), probs_of(expected), atol=1e-5)
        assert all(h["stream"] == f"client{i}" and h["time"] > 0 for h in got)
        end = messages[-1]
        assert end["type"] == "end" and end["end"] is True
        assert end["summary"]["hops"] == len(got) and end["summary"]["dropped"] == 0
        assert end["summary"]["reason"] == "client ended"
        assert end["summary"]["audio_s"] == pytest.approx(STREAMS[i][3], abs=1e-3)


def test_spectrogram_frames_come_when_asked(server, tmp_path):
    _, pcm = _audio(tmp_path, 9, 16_000, 1, "s16le", 3.0)
    messages = asyncio.run(send_stream(server.ws, "spectro", pcm, 16_000, extra={"spectrogram": True}))
    mels = [m for m in messages if m["type"] == "mel"]
    assert sum(m["frames"] for m in mels) == 1 + (48_000 - 400) // 160  # every 10 ms frame, once
    assert {m["bands"] for m in mels} == {64}
    plain = asyncio.run(send_stream(server.ws, "plain", pcm, 16_000))
    assert not [m for m in plain if m["type"] == "mel"]


def test_a_watcher_gets_every_hop_the_stream_gets(server, tmp_path):
    """Subscribed before the stream starts, a watcher sees its hops, all of them, in order."""
    import websockets

    _, pcm = _audio(tmp_path, 5, 16_000, 1, "s16le", 4.0)

    async def scenario():
        async with websockets.connect(server.ws) as watcher:
            await watcher.send(json.dumps({"watch": "watched"}))
            first = json.loads(await watcher.recv())
            own = await send_stream(server.ws, "watched", pcm, 16_000)
            seen = []
            while not seen or seen[-1]["type"] != "end":
                seen.append(json.loads(await asyncio.wait_for(watcher.recv(), 30)))
            return first, own, seen

    first, own, seen = asyncio.run(scenario())
    assert first["type"] == "watching" and not first["live"] and first["labels"] == LABELS
    assert first["hop_s"] == own[0]["hop_s"] and first["window"] == own[0]["window"]
    assert hops(seen) == hops(own) and len(hops(own)) > 10


def test_live_and_past_streams_have_one_shape(checkpoint, tmp_path):
    """/api/streams: a live stream's entry and an ended one's (from the history) have the same keys."""
    import urllib.request

    import websockets

    with running_server(checkpoint, "--db", tmp_path / "h.sqlite", cwd=tmp_path) as server:
        asyncio.run(send_stream(server.ws, "done", pcm_bytes(tone_mix(2.0, 16_000), "s16le"), 16_000))

        async def while_live():
            async with websockets.connect(server.ws) as ws:
                await ws.send(json.dumps({"name": "now", "sample_rate": 16_000}))
                await ws.recv()
                return json.load(urllib.request.urlopen(server.url + "api/streams", timeout=10))["streams"]

        streams = {s["name"]: s for s in asyncio.run(while_live())}
    assert streams["now"]["live"] and not streams["done"]["live"]
    assert set(streams["now"]) == set(streams["done"])
    assert streams["done"]["hops"] > 0 and streams["done"]["ended"] > streams["done"]["started"]


def test_health_and_metrics(server):
    import urllib.request

    health = json.load(urllib.request.urlopen(server.url + "health", timeout=10))
    assert health["status"] == "ok" and health["model"]["labels"] == LABELS
    text = urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
    for name in (
        "coaudio_streams",
        "coaudio_hops_total",
        "coaudio_hops_per_second",
        "coaudio_results_dropped",
    ):
        assert name in text
