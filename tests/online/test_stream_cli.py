"""``coaudio stream`` on real encoded files and real pipes: per-hop output equal to the batch model."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

from coaudio.features.frontend import FrontendConfig
from tests.online.helpers import LABELS, batch_probs, coaudio, hops_of, make_checkpoint, probs_of, tone_mix

FILES = [
    ("wav", "WAV", "PCM_16", 44_100, 2),
    ("flac", "FLAC", "PCM_24", 48_000, 1),
    ("ogg", "OGG", "VORBIS", 22_050, 2),
    ("mp3", "MP3", "MPEG_LAYER_III", 32_000, 1),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", hop_frames=20, window=6)


def _write(path, fmt, subtype, rate, channels, seconds=4.0):
    soundfile.write(path, tone_mix(seconds, rate, channels), rate, format=fmt, subtype=subtype)
    return path


@pytest.mark.parametrize("suffix,fmt,subtype,rate,channels", FILES, ids=[f[0] for f in FILES])
def test_a_file_streams_exactly_what_the_batch_model_predicts(
    tmp_path, checkpoint, cli, suffix, fmt, subtype, rate, channels
):
    # in process: decoding and per-hop output; a real process's stdout and stderr are the pipe tests'
    audio = _write(tmp_path / f"clip.{suffix}", fmt, subtype, rate, channels)
    done = cli("stream", checkpoint, audio, "--top-k", 5)
    assert done.status == 0, done.err
    hops = hops_of(done.out.encode())
    reference = batch_probs(checkpoint, audio)
    assert len(hops) == reference.shape[0] >= 15
    assert (probs_of(hops) - reference).abs().max() < 1e-5
    assert [h["label"] for h in hops] == [LABELS[i] for i in reference.argmax(1)]
    assert [h["warmup"] for h in hops] == [k < 5 for k in range(len(hops))]
    assert hops[0]["end_s"] == 0.975 and hops[1]["end_s"] == 1.175
    summary = done.err
    assert f"{len(hops)} hop{'s' if len(hops) != 1 else ''} over" in summary and "real-time factor" in summary
    assert "whole stream (mean probability" in summary


def test_streaming_equals_evaluate_streaming(tmp_path, checkpoint, cli):
    """``coaudio evaluate --streaming`` walks every clip through the same session."""
    from coaudio.models.checkpoint import load_checkpoint
    from coaudio.online.evaluation import _stream_clip

    audio = _write(tmp_path / "clip.wav", "WAV", "PCM_16", 22_050, 1)
    model, _, _ = load_checkpoint(checkpoint)
    evaluated = [
        torch.softmax(logits, -1)
        for _, logits, _, _ in _stream_clip(model, str(audio), FrontendConfig(hop_frames=20), 6)
    ]
    streamed = probs_of(hops_of(cli("stream", checkpoint, audio, "--top-k", 5).out.encode()))
    assert (torch.stack(evaluated) - streamed).abs().max() < 1e-6


@pytest.fixture(scope="module")
def piped(checkpoint, tmp_path_factory):
    """A 3 s clip for the pipe tests and what the batch model predicts for it, hop by hop."""
    audio = _write(tmp_path_factory.mktemp("piped") / "clip.wav", "WAV", "PCM_16", 16_000, 1, seconds=3.0)
    return audio, batch_probs(checkpoint, audio)


@pytest.mark.parametrize("kind", ["wav", "au", "raw"])
def test_stdin_from_a_real_pipe(tmp_path, checkpoint, piped, kind):
    audio, reference = piped
    if kind == "au":
        soundfile.write(
            tmp_path / "clip.au", soundfile.read(audio, dtype="int16")[0], 16_000, subtype="PCM_16"
        )
        audio = tmp_path / "clip.au"
    # a producer process writing in small pieces, like sox or parec would
    producer = (
        "import sys, time\n"
        f"data = open({str(audio)!r}, 'rb').read()\n"
        f"data = data[44:] if {kind == 'raw'!r} else data\n"
        "for at in range(0, len(data), 3000):\n"
        "    sys.stdout.buffer.write(data[at:at + 3000]); sys.stdout.buffer.flush(); time.sleep(0.001)\n"
    )
    feeder = subprocess.Popen([sys.executable, "-c", producer], stdout=subprocess.PIPE)
    extra = ["--format", "s16le", "--sr", "16000"] if kind == "raw" else []
    done = coaudio("stream", checkpoint, "-", "--top-k", 5, *extra, stdin=feeder.stdout)
    feeder.wait()
    assert done.returncode == 0, done.stderr.decode()
    got = hops_of(done.stdout)  # every line of a real process's stdout is a hop
    assert len(got) == reference.shape[0] >= 11
    # the same samples as the file; a pipe delivers them in other pieces, and patches completed
    # together are embedded in one batch, which may round differently in the last bits
    assert (probs_of(got) - reference).abs().max() <= 1e-5
    assert [h["label"] for h in got] == [LABELS[i] for i in reference.argmax(1)]
    assert f"{len(got)} hops over" in done.stderr.decode()  # the summary goes to stderr


def test_raw_stereo_f32_at_another_rate(tmp_path, checkpoint):
    audio = tone_mix(3.0, 11_025, channels=2)
    soundfile.write(tmp_path / "ref.wav", audio, 11_025, subtype="FLOAT")
    reference = batch_probs(checkpoint, tmp_path / "ref.wav")  # the same samples as a file, in batch
    done = coaudio(
        "stream",
        checkpoint,
        "-",
        "--format",
        "f32le",
        "--sr",
        11_025,
        "--channels",
        2,
        "--top-k",
        5,
        input=audio.astype("<f4").tobytes(),
    )
    assert done.returncode == 0, done.stderr.decode()
    got = probs_of(hops_of(done.stdout))
    assert got.shape == reference.shape and (got - reference).abs().max() <= 1e-5


def test_duration_wait_and_record(tmp_path, checkpoint, cli):
    audio = _write(tmp_path / "clip.wav", "WAV", "PCM_16", 16_000, 1, seconds=5.0)
    done = cli(
        "stream", checkpoint, audio, "--duration", 2.5, "--warmup", "wait", "--record", tmp_path / "heard.wav"
    )
    assert done.status == 0, done.err
    hops = hops_of(done.out.encode())
    assert len(hops) == 8  # 2.5 s: patches end at 0.975 + 0.2 k s
    assert [h["label"] is None for h in hops] == [k < 5 for k in range(8)]
    heard, rate = soundfile.read(tmp_path / "heard.wav", dtype="float32")
    assert rate == 16_000 and np.array_equal(heard, soundfile.read(audio, dtype="float32")[0][:40_000])


def test_bad_inputs_get_clear_errors(tmp_path, checkpoint, cli):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.flac").write_bytes(b"fLaC" + bytes(200))
    cases = [  # in process: none of them gets as far as reading stdin
        (["stream", checkpoint, tmp_path / "missing.wav"], "no such file"),
        (["stream", checkpoint, tmp_path / "empty.wav"], "empty file"),
        (["stream", checkpoint, tmp_path / "junk.flac"], "cannot decode"),
        (["stream", tmp_path / "nope.safetensors", tmp_path / "empty.wav"], "no such checkpoint"),
        (["stream", tmp_path / "empty.wav", "-"], "not a coaudio checkpoint"),
        (["stream", checkpoint], "exactly one source"),
        (["stream", checkpoint, "-", "--mic"], "exactly one source"),
        (["stream", checkpoint, "-", "--warmup", "later"], "'--warmup'"),
    ]
    for args, message in cases:
        done = cli(*args)
        assert done.status != 0 and message in done.err and done.out == "", (args, done)
    # a real process on a real, empty pipe
    done = coaudio("stream", checkpoint, "-", input=b"")
    assert done.returncode == 1 and "empty input" in done.stderr.decode() and done.stdout == b""


def test_ctrl_c_ends_with_the_summary(tmp_path, checkpoint):
    audio = _write(tmp_path / "clip.wav", "WAV", "PCM_16", 16_000, 1, seconds=30.0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "coaudio", "stream", str(checkpoint), str(audio), "--realtime"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.readline()  # the first hop arrives after ~1 s of paced audio
    assert b'"hop": 0' in first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    hops = 1 + len(out.decode().splitlines())
    assert f"{hops} hop{'s' if hops != 1 else ''} over" in err.decode() and "Traceback" not in err.decode()


def test_a_terminal_gets_the_live_view(tmp_path, checkpoint):
    audio = _write(tmp_path / "clip.wav", "WAV", "PCM_16", 16_000, 1, seconds=2.0)
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "coaudio", "stream", str(checkpoint), str(audio)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(follower)
    screen, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(leader)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert "warm-up 1/6" in text and "0.97 s" in text and "{" not in text  # lines, not JSON
    assert any(label in text for label in LABELS)


def test_without_sounddevice_only_the_microphone_is_unavailable(tmp_path, checkpoint):
    audio = _write(tmp_path / "clip.wav", "WAV", "PCM_16", 16_000, 1, seconds=1.5)
    hide = (
        "import sys; sys.modules['sounddevice'] = None; sys.argv[0] = 'coaudio'; "
        "from coaudio_cli.main import main; main()"
    )

    def run(*args):
        return subprocess.run(
            [sys.executable, "-c", hide, *map(str, args)], capture_output=True, text=True, timeout=120
        )

    done = run("stream", checkpoint, "--mic")
    assert done.returncode == 1 and "pip install 'coaudio[mic]'" in done.stderr
    done = run("devices")
    assert done.returncode == 1 and "sounddevice package" in done.stderr
    done = run("stream", checkpoint, audio)
    assert done.returncode == 0 and len(hops_of(done.stdout.encode())) == 3
