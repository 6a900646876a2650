"""``/health`` and ``/metrics`` report every pulled source's state: a real ``coaudio serve``
pulling from a real HTTP server (and from a port nothing listens on) through real ffmpeg; the
finer states in this process, with a real hub.

The microphone's states (unplugged, back) are in test_sources_mic.py, with the PulseAudio rig.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

from tests.online.helpers import make_checkpoint
from tests.serve.helpers import running_server
from tests.serve.test_sources_helpers import AudioHttp, Route, closed_port, ffmpeg, needs_ffmpeg

LONG_BACKOFF = {"COAUDIO_SOURCE_BACKOFF_S": "30"}  # a source that dropped stays backing off


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("health") / "m.safetensors", hop_frames=20, window=6)


@pytest.fixture(scope="module")
def mp3(tmp_path_factory) -> bytes:
    """5 s of noise as an MP3, as a radio would send it."""
    folder = tmp_path_factory.mktemp("audio")
    ffmpeg(
        "-f", "lavfi", "-i", "anoisesrc=d=5:c=pink:r=44100:a=0.3:s=7", "-c:a", "libmp3lame", folder / "n.mp3"
    )
    return (folder / "n.mp3").read_bytes()


@pytest.fixture(scope="module")
def hub(checkpoint):
    from coaudio.online.model import load_online
    from coaudio.serve.hub import Hub

    hub = Hub(load_online(checkpoint)).start()
    yield hub
    hub.stop()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read().decode()


def _poll(read, done, timeout: float):
    """``read()`` again until ``done`` holds for what it returns; that."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out; last: {value}"
        time.sleep(0.05)


def _metric(text: str, name: str, **labels) -> float | None:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(selector)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


@needs_ffmpeg
def test_a_refused_source_makes_the_server_degraded_and_says_why(checkpoint, mp3, tmp_path):
    port = closed_port()
    with AudioHttp() as http:
        # half the file, then a connection that stays open without data: streaming for 15 s
        http.routes["/radio.mp3"] = Route(mp3, hang_after=len(mp3) // 2)
        http.routes["/radio.mp3"].gate.set()
        sources = ["--source", f"radio={http.url('/radio.mp3')}"]
        sources += ["--source", f"refused=http://127.0.0.1:{port}/live"]
        args = (checkpoint, "--no-db", *sources)
        with running_server(*args, cwd=tmp_path, env=LONG_BACKOFF) as server:

            def read():
                status, text = _get(server.url + "health")
                return status, json.loads(text)

            def settled(answer) -> bool:
                sources = answer[1]["sources"]
                return sources["radio"]["state"] == "streaming" and sources["refused"]["drops"] >= 1

            status, health = _poll(read, settled, 30)
            _, metrics = _get(server.url + "metrics")
    assert status == 200 and health["status"] == "degraded"  # the server works; a source does not
    refused, radio = health["sources"]["refused"], health["sources"]["radio"]
    assert refused["state"] == "backing_off" and "Connection refused" in refused["last_error"]
    assert (refused["kind"], refused["source"]) == ("url", f"http://127.0.0.1:{port}/live")
    assert (refused["sessions"], refused["drops"], refused["reconnects"]) == (0, 1, 0)
    assert 0 < refused["retry_in_s"] <= 30 and refused["down_s"] > 0
    assert refused["last_error_at"] >= refused["since"] - 1 and refused["since"] <= time.time()
    assert (radio["state"], radio["sessions"], radio["drops"]) == ("streaming", 1, 0)
    assert radio["last_error"] is None and radio["retry_in_s"] is None
    assert _metric(metrics, "coaudio_source_state", source="radio", state="streaming") == 1.0
    assert _metric(metrics, "coaudio_source_state", source="radio", state="backing_off") == 0.0
    assert _metric(metrics, "coaudio_source_state", source="refused", state="backing_off") == 1.0
    assert _metric(metrics, "coaudio_source_state", source="refused", state="streaming") == 0.0
    assert _metric(metrics, "coaudio_source_drops_total", source="refused") == 1.0


@needs_ffmpeg
def test_streaming_and_first_connections_are_ok(hub, mp3):
    from coaudio.serve import source_metrics
    from coaudio.serve.sources import Backoff, UrlSource

    with AudioHttp() as http:
        http.routes["/held.mp3"] = Route(mp3)  # its gate stays shut: ffmpeg waits for an answer
        http.routes["/radio.mp3"] = Route(mp3, hang_after=len(mp3) // 2)
        http.routes["/radio.mp3"].gate.set()
        held = UrlSource("held", http.url("/held.mp3"), Backoff(first_s=30.0))
        radio = UrlSource("radio", http.url("/radio.mp3"), Backoff(first_s=30.0))
        try:
            held.start(hub)
            radio.start(hub)
            ok, report = _poll(
                lambda: source_metrics.health(hub), lambda r: r[1]["radio"]["state"] == "streaming", 30
            )
        finally:
            held.stop()
            radio.stop()
        assert ok, report  # connecting for the first time, for a few seconds, is no fault
        assert report["held"]["state"] == "connecting" and report["held"]["last_error"] is None
        assert source_metrics.sources_of(hub) == []  # stopped sources are no longer reported
        assert held.state.snapshot()["state"] == radio.state.snapshot()["state"] == "stopped"


@needs_ffmpeg
def test_a_source_whose_thread_dies_is_failed_not_silently_gone(hub):
    from coaudio.serve import source_metrics
    from coaudio.serve.sources import Backoff, UrlSource

    # a defect in the supervisor itself (here: a back-off without its random generator) is
    # no drop the source can retry: before it had a state, /health still said "ok"
    broken = UrlSource("broken", f"http://127.0.0.1:{closed_port()}/x", Backoff(rng=None))
    try:
        broken.start(hub)
        broken._thread.join(30)
        ok, report = source_metrics.health(hub)
    finally:
        broken.stop()
    assert not ok and report["broken"]["state"] == "failed"
    assert report["broken"]["last_error"].startswith("internal error: AttributeError")
