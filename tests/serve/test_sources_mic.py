"""``coaudio serve --source NAME=mic:DEVICE`` against the real PulseAudio rig of test_mic.py: a
daemon whose default source is a FIFO the test writes to in real time, and which the test can
unplug (unload the source's module) and plug in again. Skipped, saying why, without PulseAudio.
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

import numpy as np
import pytest

from tests.online.helpers import make_checkpoint
from tests.online.test_mic import CHUNK, RATE, PipeMic, _missing
from tests.serve.helpers import running_server
from tests.serve.test_sources_helpers import Watcher, count

pytestmark = pytest.mark.skipif(bool(_missing()), reason=_missing() or "ok")

ENV = {"COAUDIO_SOURCE_BACKOFF_S": "0.2"}


class PluggableMic(PipeMic):
    """The rig's FIFO microphone, fed with seeded noise in real time on a thread; ``unplug``
    removes the device from PulseAudio (as pulling out a USB microphone does), ``plug`` brings
    it back."""

    def __init__(self, root) -> None:
        super().__init__(root)
        os.close(self._writer)
        self._writer = self._open_writer()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()

    def pactl(self, *args) -> str:
        return subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def unplug(self) -> None:
        modules = self.pactl("list", "short", "modules").splitlines()
        module = next(line.split()[0] for line in modules if "module-pipe-source" in line)
        with self._lock:
            os.close(self._writer)
            self._writer = None
            self.pactl("unload-module", module)

    def plug(self) -> None:
        source = f"source_name=pipemic file={self.fifo} format=s16le rate={RATE} channels=1"
        self.pactl("load-module", "module-pipe-source", *source.split())
        self.pactl("set-default-source", "pipemic")
        writer = self._open_writer()
        with self._lock:
            self._writer = writer

    def _open_writer(self) -> int:
        """Never blocking: a block nobody reads is lost (as a real microphone's audio is), and
        the feeder never holds the lock in a write that waits."""
        return os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)

    def _feed(self) -> None:
        rng, start, i = np.random.default_rng(7), time.monotonic(), 0
        while not self._stop.is_set():
            block = (rng.standard_normal(CHUNK) * 3000).astype("<i2").tobytes()
            with self._lock:
                if self._writer is not None:
                    try:
                        os.write(self._writer, block)  # at most PIPE_BUF: all or nothing
                    except (BlockingIOError, BrokenPipeError):
                        pass
            i += 1
            time.sleep(max(0.0, start + i * CHUNK / RATE - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._feeder.join(5)
        with self._lock:
            if self._writer is not None:
                os.close(self._writer)
                self._writer = None
        subprocess.run(["pactl", "exit"], env=self.env, capture_output=True)


@pytest.fixture
def mic(tmp_path):
    rig = PluggableMic(tmp_path)
    yield rig
    rig.close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.safetensors", hop_frames=20, window=6)


def test_the_default_input_device_is_streamed(mic, checkpoint, tmp_path):
    with running_server(
        checkpoint, "--no-db", "--source", "room=mic:", cwd=tmp_path, env={**mic.env, **ENV}
    ) as server:
        watcher = Watcher(server.ws, "room")
        messages = watcher.wait_for(lambda m: count(m, "hop") >= 5, 30)
        live = json.load(urllib.request.urlopen(server.url + "api/streams", timeout=10))["streams"]
        watcher.close()
    hops = [m for m in messages if m["type"] == "hop"]
    assert [h["hop"] for h in hops[:5]] == [0, 1, 2, 3, 4] and {h["stream"] for h in hops} == {"room"}
    room = next(s for s in live if s["name"] == "room")
    assert (room["kind"], room["source"], room["sample_rate"]) == ("mic", "default", RATE)


def test_an_unplugged_device_is_a_drop_and_the_source_comes_back_with_it(mic, checkpoint, tmp_path):
    env = {**mic.env, **ENV}
    with running_server(checkpoint, "--no-db", "--source", "room=mic:pulse", cwd=tmp_path, env=env) as server:
        watcher = Watcher(server.ws, "room")
        watcher.wait_for(lambda m: count(m, "hop") >= 3, 30)
        mic.unplug()
        watcher.wait_for(lambda m: count(m, "drop") >= 2, 30)  # the drop, then a failed reopening
        unplugged = json.load(urllib.request.urlopen(server.url + "health", timeout=10))
        mic.plug()
        messages = watcher.wait_for(lambda m: len(_since_last_drop(m)) >= 3, 30)
        metrics = urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
        back = json.load(urllib.request.urlopen(server.url + "health", timeout=10))
        watcher.close()
        stderr = server.stderr
    drops = [m for m in messages if m["type"] == "drop"]
    assert drops[0]["reason"] == "the input device stopped (unplugged, or its audio server went away)"
    assert "input device pulse" in drops[1]["reason"]  # it cannot be opened while it is gone
    order = [m["type"] for m in messages if m["type"] != "hop"]
    assert order[0] == "end" and order[1] == "drop"  # the first session's summary, then the drop
    assert _since_last_drop(messages)[0]["hop"] == 0  # a new session, under the same name
    reconnects = re.search(r'coaudio_source_reconnects_total\{source="room"\} (\S+)', metrics)
    assert reconnects and float(reconnects.group(1)) >= 2
    assert "source room (pulse) dropped: the input device stopped" in stderr
    gone = unplugged["sources"]["room"]
    assert unplugged["status"] == "degraded" and gone["state"] in ("backing_off", "connecting")
    assert "input device pulse" in gone["last_error"] and gone["drops"] >= 2 and gone["sessions"] == 1
    room = back["sources"]["room"]
    assert back["status"] == "ok" and (room["kind"], room["source"], room["state"]) == (
        "mic",
        "pulse",
        "streaming",
    )
    assert room["sessions"] == 2 and room["drops"] >= 2 and room["reconnects"] >= 2
    assert 'coaudio_source_state{source="room",state="streaming"} 1.0' in metrics


def _since_last_drop(messages: list[dict]) -> list[dict]:
    """The hops after the last drop."""
    last = max((i for i, m in enumerate(messages) if m["type"] == "drop"), default=0)
    return [m for m in messages[last:] if m["type"] == "hop"]


def test_a_device_that_does_not_exist_is_a_clear_error(mic, checkpoint):
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "serve", str(checkpoint), "--no-db", "--port", "0"]
        + ["--source", "room=mic:no-such-device"],
        capture_output=True,
        text=True,
        env=mic.env,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "error: source room: input device no-such-device" in done.stderr
    assert "Traceback" not in done.stderr
