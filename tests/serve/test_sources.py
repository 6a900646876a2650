"""``coaudio serve --source NAME=URL``: real ffmpeg pulling real encoded audio from a real HTTP
server; the hops a watcher sees equal ``coaudio stream`` on what ffmpeg decodes from the same file.

The HTTP server holds each answer until the test opens its gate, so the watcher is subscribed
before the first audio flows (a live radio would have been playing all along). Back-off is
shortened through ``COAUDIO_SOURCE_BACKOFF_S``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile

from tests.online.helpers import hops_of, make_checkpoint, probs_of, tone_mix
from tests.serve.helpers import running_server, stream_cli
from tests.serve.test_sources_helpers import (
    FFMPEG,
    AudioHttp,
    Route,
    Watcher,
    closed_port,
    count,
    decode_16k,
    ffmpeg,
    ffmpeg_children,
    ffmpeg_reading,
    needs_ffmpeg,
    sessions,
)

BACKOFF_S = 0.2
ENV = {"COAUDIO_SOURCE_BACKOFF_S": str(BACKOFF_S)}
KINDS = ("wav", "mp3", "ogg")
CODECS = {"wav": None, "mp3": ("-c:a", "libmp3lame", "-b:a", "96k"), "ogg": ("-c:a", "libvorbis")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("sources") / "m.safetensors", hop_frames=20, window=6)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """The same 5 s signal as a 44.1 kHz stereo WAV, an MP3 and an Ogg Vorbis file."""
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    folder = tmp_path_factory.mktemp("audio")
    wav = folder / "tone.wav"
    soundfile.write(wav, tone_mix(5.0, 44_100, 2, seed=3), 44_100, subtype="PCM_16")
    files = {"wav": wav}
    for kind in ("mp3", "ogg"):
        files[kind] = folder / f"tone.{kind}"
        ffmpeg("-i", wav, *CODECS[kind], files[kind])
    return files


@contextmanager
def pulling(checkpoint, http: AudioHttp, cwd, **routes: Route):
    """``coaudio serve`` pulling each route of ``http`` as a source of the same name; the
    routes' gates are shut until the test opens them (ffmpeg waits for the answer meanwhile)."""
    args = []
    for name, route in routes.items():
        http.routes[f"/{name}"] = route
        args += ["--source", f"{name}={http.url(f'/{name}')}"]
    with running_server(checkpoint, "--no-db", *args, cwd=cwd, env=ENV) as server:
        yield server


@needs_ffmpeg
def test_a_url_gives_the_hops_coaudio_stream_gives_for_its_decoded_audio(audio, checkpoint, tmp_path):
    references = {k: stream_cli(checkpoint, decode_16k(audio[k], tmp_path / f"{k}16k.wav")) for k in KINDS}
    routes = {f"radio_{kind}": Route(audio[kind].read_bytes(), answers=1) for kind in KINDS}
    with AudioHttp() as http, pulling(checkpoint, http, tmp_path, **routes) as server:
        watchers = {kind: Watcher(server.ws, f"radio_{kind}") for kind in KINDS}
        for route in routes.values():
            route.gate.set()
        received = {kind: watchers[kind].wait_for(lambda m: count(m, "end") >= 1, 60) for kind in KINDS}
        for watcher in watchers.values():
            watcher.close()
    for kind, messages in received.items():
        stdout, stderr = references[kind].communicate(timeout=120)
        assert references[kind].returncode == 0, stderr.decode()
        expected, got = hops_of(stdout), sessions(messages)[0]
        assert len(expected) == 21  # 5 s: patches end at 0.975 + 0.2 k s
        assert [h["hop"] for h in got] == [h["hop"] for h in expected], kind
        assert [h["label"] for h in got] == [h["label"] for h in expected], kind
        assert [(h["start_s"], h["end_s"]) for h in got] == [(h["start_s"], h["end_s"]) for h in expected]
        np.testing.assert_allclose(probs_of(got), probs_of(expected), atol=1e-5)
        assert {h["stream"] for h in got} == {f"radio_{kind}"}
        end = next(m for m in messages if m["type"] == "end")
        assert end["summary"]["hops"] == 21 and end["summary"]["audio_s"] == pytest.approx(5.0, abs=0.03)


@needs_ffmpeg
def test_a_cut_connection_is_a_drop_and_the_source_reconnects(audio, checkpoint, tmp_path):
    mp3 = audio["mp3"].read_bytes()
    route = Route(mp3, cut_first=len(mp3) // 2, answers=2)  # then 404: the radio is gone
    with AudioHttp() as http, pulling(checkpoint, http, tmp_path, cut=route) as server:
        watcher = Watcher(server.ws, "cut")
        route.gate.set()
        messages = watcher.wait_for(lambda m: count(m, "end") >= 2, 60)
        watcher.close()
        metrics = urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
        stderr = server.stderr
    order = [m["type"] for m in messages if m["type"] in ("end", "drop")]
    assert order[:3] == ["end", "drop", "end"]  # the session's summary, then why it ended
    drop = next(m for m in messages if m["type"] == "drop")
    assert drop["stream"] == "cut" and "Input/output error" in drop["reason"], drop
    end = next(m for m in messages if m["type"] == "end")
    assert end["summary"]["reason"] == f"source dropped: {drop['reason']}"
    assert 0.8 * BACKOFF_S <= drop["retry_in_s"] <= BACKOFF_S  # the first wait, with jitter
    first, second = sessions(messages)[:2]
    assert 0 < len(first) < len(second) == 21  # half the file, then the whole file
    assert first[0]["hop"] == second[0]["hop"] == 0  # two sessions: each starts from its first hop
    reconnects = re.search(r'coaudio_source_reconnects_total\{source="cut"\} (\S+)', metrics)
    assert reconnects and float(reconnects.group(1)) >= 1
    assert re.search(r"source cut \(http://127\.0\.0\.1:\d+/cut\) dropped: .*Input/output error", stderr)


@needs_ffmpeg
def test_unreachable_urls_are_retried_with_back_off_and_health_says_so(checkpoint, tmp_path):
    port = closed_port()
    with AudioHttp() as http:
        sources = [
            "--source",
            f"refused=http://127.0.0.1:{port}/live",
            "--source",
            f"gone={http.url('/gone.mp3')}",
        ]
        with running_server(checkpoint, "--no-db", *sources, cwd=tmp_path, env=ENV) as server:
            watchers = {name: Watcher(server.ws, name) for name in ("refused", "gone")}
            drops = {n: w.wait_for(lambda m: count(m, "drop") >= 3, 30) for n, w in watchers.items()}
            health = json.load(urllib.request.urlopen(server.url + "health", timeout=10))
            for watcher in watchers.values():
                watcher.close()
            began = time.monotonic()
            status = server.stop()
            stopped_s = time.monotonic() - began
    for name, words in (("refused", "Connection refused"), ("gone", "404 Not Found")):
        assert not [m for m in drops[name] if m["type"] != "drop"]  # no session was ever opened
        assert all(words in m["reason"] for m in drops[name]), drops[name]
        waits = [m["retry_in_s"] for m in drops[name]]
        assert waits == sorted(waits) and waits[-1] > 1.5 * waits[0]  # doubling (jitter <= 20%)
    assert health["status"] == "degraded" and health["streams"] == 0  # the server runs; its sources do not
    for name, words in (("refused", "Connection refused"), ("gone", "404 Not Found")):
        state = health["sources"][name]
        assert state["state"] in ("backing_off", "connecting") and words in state["last_error"], state
        assert state["drops"] >= 3 and state["reconnects"] >= 2 and state["sessions"] == 0
    # Ctrl-C ends the server, in 0.7 s on a quiet machine (3 s under load: interpreter teardown);
    # that stop() cuts a back-off wait short is measured in-process below
    assert status == 130 and stopped_s < 10.0
    assert not ffmpeg_reading(f":{port}/") and not ffmpeg_reading(http.url("/gone.mp3"))


def test_bad_source_specs_are_refused_with_the_reason():
    from coaudio.serve.sources import MicSource, SourceError, UrlSource, parse_source

    for spec, words in (
        ("noequals", "has no '='"),
        ("=http://x", "stream name ''"),
        ("a=ftp://x", "http://, https:// or rtsp://"),
        ("a b=http://x", "stream name 'a b'"),
        ("a=http:///x", "names no host"),
        ("a=http://x:port/", "not a valid URL"),
    ):
        with pytest.raises(SourceError, match=re.escape(words)):
            parse_source(spec)
    assert isinstance(parse_source("r=rtsp://cam.local/live"), UrlSource)
    secret = parse_source("r=https://me:secret@radio.example:8443/live")
    assert secret.where == "https://me:***@radio.example:8443/live"  # what logs and pages show
    default, named, index = parse_source("m=mic:"), parse_source("m=mic:USB Audio"), parse_source("m=mic:3")
    assert isinstance(default, MicSource) and default.device is None and default.where == "default"
    assert (named.device, index.device) == ("USB Audio", 3)


def test_the_command_line_refuses_bad_and_duplicate_sources(checkpoint):
    from typer.testing import CliRunner

    from coaudio_cli.main import app

    runner = CliRunner()
    for args, words in (
        (["--source", "a=ftp://x"], "'a=ftp://x': 'ftp://x' is not a URL"),
        (["--source", "a=http://x/1", "--source", "a=mic:"], "two sources are named 'a'"),
    ):
        result = runner.invoke(app, ["serve", str(checkpoint), "--no-db", *args])
        assert result.exit_code == 2, result.output
        assert words in " ".join(result.output.split()), result.output  # rich wraps lines


def test_missing_ffmpeg_is_a_clear_error_not_a_traceback(checkpoint, tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no ffmpeg on it
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "serve", str(checkpoint), "--no-db", "--port", "0"]
        + ["--source", "radio=http://127.0.0.1:9/live.mp3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "error: source radio: reading http://127.0.0.1:9/live.mp3 needs ffmpeg" in done.stderr
    assert "install ffmpeg" in done.stderr and "Traceback" not in done.stderr


def test_back_off_doubles_up_to_its_cap_and_starts_over_after_a_stable_session():
    from coaudio.serve.sources import Backoff

    backoff = Backoff(first_s=1.0, max_s=8.0, stable_s=60.0, jitter=0.0)
    assert [backoff.next(0.0) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.next(59.0) == 8.0 and backoff.next(60.0) == 1.0 and backoff.next(1.0) == 2.0
    jittered = Backoff(first_s=1.0, jitter=0.2)
    assert all(0.8 * 2**k <= jittered.next(0.0) <= 2**k for k in range(5))
    assert Backoff(failures=10_000).next(0.0) <= 60.0  # no overflow however long it fails


def test_the_back_off_variable_is_checked(monkeypatch):
    from coaudio.serve.sources import Backoff, SourceError

    monkeypatch.setenv("COAUDIO_SOURCE_BACKOFF_S", "0.05")
    assert Backoff.from_env().first_s == 0.05
    for bad in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv("COAUDIO_SOURCE_BACKOFF_S", bad)
        with pytest.raises(SourceError, match="COAUDIO_SOURCE_BACKOFF_S must be a positive number"):
            Backoff.from_env()


# ---- in this process, with a real hub: what a separate server process would hide -------------


class Collect:
    """A hub sink (a watcher) that keeps what it gets."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.lock = threading.Lock()

    def deliver(self, messages: list[dict]) -> None:
        with self.lock:
            self.messages.extend(m for m in messages if m["type"] != "mel")

    def wait_for(self, done, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                messages = list(self.messages)
            if done(messages):
                return messages
            assert time.monotonic() < deadline, [m["type"] for m in messages]
            time.sleep(0.02)


@pytest.fixture(scope="module")
def hub(checkpoint):
    from coaudio.online.model import load_online
    from coaudio.serve.hub import Hub

    hub = Hub(load_online(checkpoint)).start()
    yield hub
    hub.stop()


def _watch(hub, name: str) -> Collect:
    sink = Collect()
    hub.watch(name, sink)
    return sink


@needs_ffmpeg
def test_stop_is_prompt_while_connected_and_while_waiting(hub, audio):
    from coaudio.serve.sources import Backoff, UrlSource

    with AudioHttp() as http:
        http.routes["/held.mp3"] = Route(audio["mp3"].read_bytes())  # its gate stays shut
        held = UrlSource("held", http.url("/held.mp3"))
        held.start(hub)
        deadline = time.monotonic() + 10
        while not ffmpeg_children():
            assert time.monotonic() < deadline, "ffmpeg did not start"
            time.sleep(0.02)
        began = time.monotonic()
        held.stop()
        assert time.monotonic() - began < 1.0
        waiting = UrlSource("waiting", f"http://127.0.0.1:{closed_port()}/x", Backoff(first_s=30.0))
        drops = _watch(hub, "waiting")
        waiting.start(hub)
        drops.wait_for(lambda m: count(m, "drop") == 1, 10)  # now in a 24-30 s wait
        began = time.monotonic()
        waiting.stop()
        assert time.monotonic() - began < 0.5
    assert ffmpeg_children() == []  # every ffmpeg was reaped: none left, not even a zombie
    assert not held._thread.is_alive() and not waiting._thread.is_alive()


@needs_ffmpeg
def test_a_server_that_stops_sending_is_a_drop(hub, audio):
    from coaudio.serve.sources import Backoff, UrlSource

    mp3 = audio["mp3"].read_bytes()
    with AudioHttp() as http:
        http.routes["/stalls.mp3"] = Route(mp3, hang_after=len(mp3) // 3)
        http.routes["/stalls.mp3"].gate.set()
        sink = _watch(hub, "stalls")
        source = UrlSource("stalls", http.url("/stalls.mp3"), Backoff(first_s=30.0), io_timeout_s=1.0)
        began = time.monotonic()
        source.start(hub)
        messages = sink.wait_for(lambda m: count(m, "drop") == 1, 15)
        took = time.monotonic() - began
        source.stop()
    assert 1.0 < took < 5.0
    assert [m["type"] for m in messages if m["type"] != "hop"] == ["end", "drop"]
    assert messages[-1]["reason"] == "no audio for 1 s"
    assert count(messages, "hop") > 0  # a third of the file came through before the stall
