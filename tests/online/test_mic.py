"""``coaudio stream --mic`` against a real PulseAudio daemon whose default source is a pipe.

The daemon (module-pipe-source) turns bytes written to a FIFO into a microphone, bit for bit,
at the pace they are written. The tests feed seeded noise in real time and check that the audio
coaudio heard is an exact slice of what was fed, that its hops equal streaming the recording
from a file, and that a pause in the feed is reported as missing audio. They need the
``pulseaudio``, ``pactl`` and libportaudio2 system packages (``.ci/run`` installs them) and
are skipped, with the reason shown, where those are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

from tests.online.helpers import coaudio, hops_of, make_checkpoint, probs_of

RATE = 16_000
CHUNK = 800  # 50 ms per write


def _missing() -> str:
    for tool in ("pulseaudio", "pactl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils)"
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], capture_output=True, text=True)
    if probe.returncode:
        return f"sounddevice/PortAudio unavailable: {probe.stderr.strip().splitlines()[-1]}"
    return ""


pytestmark = pytest.mark.skipif(bool(_missing()), reason=_missing() or "ok")


class PipeMic:
    """A PulseAudio daemon in a private runtime folder with a FIFO as its default source."""

    def __init__(self, root) -> None:
        self.env = {**os.environ, "HOME": str(root / "home"), "XDG_RUNTIME_DIR": str(root / "xdg")}
        for name in ("home", "xdg"):
            (root / name).mkdir(mode=0o700)
        self.fifo = root / "xdg" / "mic.fifo"
        self.log = root / "pulse.log"
        subprocess.run(
            [
                "pulseaudio",
                "-D",
                "-n",
                "--exit-idle-time=-1",
                f"--log-target=file:{self.log}",
                "--load=module-native-protocol-unix",
                f"--load=module-pipe-source source_name=pipemic file={self.fifo} format=s16le "
                f"rate={RATE} channels=1",
            ],
            env=self.env,
            check=True,
            timeout=30,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PulseAudio did not start: {self.log.read_text()}")
            time.sleep(0.05)
        subprocess.run(["pactl", "set-default-source", "pipemic"], env=self.env, check=True)
        self._writer = os.open(self.fifo, os.O_WRONLY)
        os.set_blocking(self._writer, False)  # a full FIFO must not hang the feeder once told to stop

    def feed(
        self,
        samples: np.ndarray,
        pause_at: threading.Event | None = None,
        pause_s: float = 0.0,
        stop: threading.Event | None = None,
    ) -> None:
        """Write int16 ``samples`` at real-time pace; after ``pause_at`` is set, go silent
        (write nothing) for ``pause_s`` once."""
        data, start, paused = samples.astype("<i2").tobytes(), time.monotonic(), False
        for i, at in enumerate(range(0, len(data), 2 * CHUNK)):
            if stop is not None and stop.is_set():
                return
            if pause_at is not None and pause_at.is_set() and not paused:
                time.sleep(pause_s)
                start += pause_s
                paused = True
            if not self._write(data[at : at + 2 * CHUNK], stop):
                return
            time.sleep(max(0.0, start + (i + 1) * CHUNK / RATE - time.monotonic()))

    def _write(self, chunk: bytes, stop: threading.Event | None) -> bool:
        """All of ``chunk`` (nothing is lost while someone records), unless ``stop`` is set
        while the FIFO is full (PulseAudio no longer reading): then False."""
        while chunk:
            try:
                chunk = chunk[os.write(self._writer, chunk) :]
            except BlockingIOError:
                if stop is not None and stop.is_set():
                    return False
                time.sleep(0.002)
        return True

    def close(self) -> None:
        os.close(self._writer)
        subprocess.run(["pactl", "exit"], env=self.env, capture_output=True)


@pytest.fixture(scope="module")
def mic(tmp_path_factory):
    rig = PipeMic(tmp_path_factory.mktemp("pulse"))
    yield rig
    rig.close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", hop_frames=20, window=6)


def _noise(seconds: float, seed: int) -> np.ndarray:
    """Seeded int16 noise with a slow envelope: every 100-sample stretch is unique."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = 0.3 + 0.2 * np.sin(np.arange(n) / RATE * 2 * np.pi * 0.7)
    return np.clip(rng.standard_normal(n) * 6000 * envelope, -32768, 32767).astype(np.int16)


def _start_feeding(mic, samples, **kwargs) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=mic.feed, args=(samples,), kwargs={**kwargs, "stop": stop}, daemon=True)
    thread.start()
    return thread, stop


def test_the_microphone_hears_the_fed_signal_and_streams_it(mic, checkpoint, tmp_path):
    fed = _noise(20.0, seed=1)
    feeder, stop = _start_feeding(mic, fed)
    try:
        done = coaudio(
            "stream",
            checkpoint,
            "--mic",
            "--duration",
            3.0,
            "--top-k",
            5,
            "--record",
            tmp_path / "heard.wav",
            env=mic.env,
            timeout=60,
        )
    finally:
        stop.set()
        feeder.join(10)
    assert done.returncode == 0, done.stderr.decode()
    heard, rate = soundfile.read(tmp_path / "heard.wav", dtype="float32")
    assert rate == RATE and len(heard) == 3 * RATE
    as_int = np.round(heard * 32768).astype(np.int16)
    assert np.array_equal(as_int / np.float32(32768), heard)  # nothing but int16 steps
    offset = fed.tobytes().find(as_int[:200].tobytes())
    assert offset >= 0 and offset % 2 == 0  # coaudio joined the stream somewhere...
    start = offset // 2
    assert np.array_equal(as_int, fed[start : start + len(as_int)])  # ...and then heard every sample

    hops = hops_of(done.stdout)
    assert len(hops) == 11  # patches end at 0.975 + 0.2 k s <= 3 s
    replay = hops_of(coaudio("stream", checkpoint, tmp_path / "heard.wav", "--top-k", 5).stdout)
    assert (probs_of(hops) - probs_of(replay)).abs().max() <= 1e-5  # batched embedding: last bits may differ
    summary = done.stderr.decode()
    assert "microphone: 3.00 s recorded at 16000 Hz; 0 gap(s)" in summary
    assert "11 hops over 3.00 s" in summary


def test_a_silent_device_is_reported_as_missing_audio(mic, checkpoint):
    first_hop = threading.Event()
    feeder, stop = _start_feeding(mic, _noise(30.0, seed=2), pause_at=first_hop, pause_s=1.5)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coaudio",
                "stream",
                str(checkpoint),
                "--mic",
                "--device",
                "pulse",
                "--duration",
                "4",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=mic.env,
        )
        assert b'"hop": 0' in proc.stdout.readline()
        first_hop.set()
        out, err = proc.communicate(timeout=60)
    finally:
        stop.set()
        feeder.join(10)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "1 gap(s)" in text, text
    missing = float(text.split("about ")[1].split(" s of audio did not arrive")[0])
    assert 1.0 < missing < 2.0
    assert len(out.decode().splitlines()) == 16 - 1  # hops of 4 s of audio, minus the line read above


def test_devices_lists_the_pulse_input(mic):
    import json

    done = coaudio("devices", "--json", env=mic.env)
    assert done.returncode == 0, done.stderr.decode()
    names = {d["name"]: d for d in json.loads(done.stdout)}
    assert "pulse" in names and names["pulse"]["channels"] > 0
    assert sum(d["is_default"] for d in names.values()) == 1


def test_an_unusable_device_gets_a_clear_error(mic, checkpoint, tmp_path):
    done = coaudio("stream", checkpoint, "--mic", "--device", "no-such-device", env=mic.env)
    assert done.returncode == 1 and "no-such-device" in done.stderr.decode()
    env = {**mic.env, "PULSE_SERVER": f"unix:{tmp_path}/nothing-listens-here"}
    done = coaudio("stream", checkpoint, "--mic", "--device", "pulse", "--duration", 1, env=env, timeout=60)
    assert done.returncode == 1 and "error:" in done.stderr.decode(), done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
