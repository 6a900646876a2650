"""Every command, misused: one ``error:`` line on stderr, a non-zero status, never a traceback.

The matrix runs in-process through ``coaudio_cli.main.run`` (the same entry point as the
``coaudio`` script, minus the interpreter start-up); the stdin cases and a sample of the rest
also run as real subprocesses with real pipes.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from coaudio_cli.main import run
from tests.online.helpers import make_checkpoint, tone_mix

RANDOM_BYTES = np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths the bad arguments point at: a checkpoint, audio good and bad, odd folders."""
    root = tmp_path_factory.mktemp("bad-input")
    make_checkpoint(root / "model.safetensors")
    soundfile.write(root / "good.wav", tone_mix(2.0, 16_000), 16_000)
    soundfile.write(root / "short.wav", tone_mix(0.3, 16_000), 16_000)
    (root / "empty.wav").write_bytes(b"")
    (root / "corrupt.flac").write_bytes(b"fLaC" + RANDOM_BYTES[:5000])
    (root / "notes.txt").write_text("not audio\n")
    (root / "emptydir").mkdir()
    (root / "noconfig").mkdir()
    (root / "badconfig").mkdir()
    (root / "badconfig" / "config.json").write_text("{not json")
    (root / "nobest").mkdir()
    (root / "nobest" / "config.json").write_text(json.dumps({"labels": ["a", "b"], "paths": {"test": []}}))
    for label in ("a", "b"):
        (root / "data" / label).mkdir(parents=True)
        soundfile.write(root / "data" / label / "x.wav", tone_mix(1.5, 16_000), 16_000)
    return root


# (argv with {root} standing for the fixture folder, stdin bytes or None, what the error says)
CASES = [
    (["trian"], None, "No such command"),
    (["--bogus"], None, "No such option"),
    (["stream"], None, "Missing argument"),
    (["stream", "{root}/missing.safetensors", "{root}/good.wav"], None, "no such checkpoint"),
    (["stream", "{root}/notes.txt", "{root}/good.wav"], None, "not a coaudio checkpoint"),
    (["stream", "{root}/emptydir", "{root}/good.wav"], None, "not a finished coaudio run"),
    (["stream", "{root}/model.safetensors", "{root}/missing.wav"], None, "missing.wav"),
    (["stream", "{root}/model.safetensors", "{root}/empty.wav"], None, "empty"),
    (["stream", "{root}/model.safetensors", "{root}/corrupt.flac"], None, "corrupt.flac"),
    (["stream", "{root}/model.safetensors", "{root}/notes.txt"], None, "notes.txt"),
    (["stream", "{root}/model.safetensors", "{root}/emptydir"], None, "emptydir"),
    (["stream", "{root}/model.safetensors", "{root}/short.wav"], None, "no prediction"),
    (["stream", "{root}/model.safetensors", "-", "--format", "f16le"], None, "'--format'"),
    (["stream", "{root}/model.safetensors", "-", "--warmup", "soon"], None, "'--warmup'"),
    (["stream", "{root}/model.safetensors", "-", "--top-k", "0"], None, "'--top-k'"),
    (["stream", "{root}/model.safetensors", "-", "--sr", "-5"], None, "'--sr'"),
    (["stream", "{root}/model.safetensors", "-", "--duration", "abc"], None, "'--duration'"),
    (["stream", "{root}/model.safetensors"], None, "exactly one source"),
    (["stream", "{root}/model.safetensors", "{root}/good.wav", "--mic"], None, "exactly one source"),
    (["stream", "{root}/model.safetensors", "-"], b"", "empty input"),
    (["stream", "{root}/model.safetensors", "-"], RANDOM_BYTES, "no audio format recognised"),
    (
        ["stream", "{root}/model.safetensors", "-", "--format", "s16le", "--sr", "16000"],
        b"\x01\x02",
        "no prediction",
    ),
    (
        ["stream", "{root}/model.safetensors", "{root}/good.wav", "--record", "{root}/missing/dir/x.wav"],
        None,
        "cannot write the recording",
    ),
    (
        ["stream", "{root}/model.safetensors", "{root}/good.wav", "--format", "s16le"],
        None,
        "a file's own header",
    ),
    (["stream", "{root}/model.safetensors", "{root}/good.wav", "--duration", "0"], None, "'--duration'"),
    (["classify", "{root}/missing", "{root}/good.wav"], None, "no such checkpoint"),
    (["classify", "{root}/model.safetensors", "{root}/good.wav", "--format", "xml"], None, "'--format'"),
    (
        ["classify", "{root}/model.safetensors", "{root}/good.wav", "-o", "{root}/out.xyz"],
        None,
        "give --format",
    ),
    (["classify", "{root}/model.safetensors", "{root}/good.wav", "--jobs", "-1"], None, "'--jobs'"),
    (["classify", "{root}/model.safetensors", "{root}/emptydir"], None, "emptydir"),
    (
        ["classify", "{root}/model.safetensors", "{root}/good.wav", "-o", "{root}/missing/out.csv"],
        None,
        "does not exist",
    ),
    (
        [
            "classify",
            "{root}/model.safetensors",
            "{root}/good.wav",
            "-o",
            "{root}/emptydir",
            "--format",
            "csv",
        ],
        None,
        "is a folder",
    ),
    (["evaluate", "{root}/missing"], None, "no such run folder"),
    (["evaluate", "{root}/noconfig"], None, "no config.json"),
    (["evaluate", "{root}/badconfig"], None, "unreadable run config"),
    (["evaluate", "{root}/nobest"], None, "no best.safetensors"),
    (["evaluate", "{root}/nobest", "--data", "{root}/missing"], None, "no such folder"),
    (["evaluate", "{root}/good.wav"], None, "is a file: give a run folder"),
    (["evaluate", "{root}/model.safetensors"], None, "(--data DIR)"),
    (["evaluate", "{root}/model.safetensors", "--data", "{root}/emptydir"], None, "label folder"),
    (["train", "folder", "{root}/missing", "--out", "{root}/run"], None, "no such folder"),
    (["train", "folder", "{root}/emptydir", "--out", "{root}/run"], None, "label folder"),
    (["train", "folder", "{root}/data", "--out", "{root}/run", "--recipe", "nosuch"], None, "nosuch"),
    (["train", "folder", "{root}/data", "--out", "{root}/run", "--set", "train.epochs=abc"], None, "epochs"),
    (["train", "folder", "{root}/data", "--out", "{root}/run", "--set", "nosuch.key=1"], None, "nosuch"),
    (["train", "folder", "{root}/data", "--out", "{root}/good.wav"], None, "not a folder"),
    (["train", "folder", "{root}/good.wav", "--out", "{root}/run"], None, "a file, not a folder"),
    (
        ["train", "folder", "{root}/data", "--out", "{root}/run", "--set", "train.epochs=0"],
        None,
        "epochs must be >= 1",
    ),
    (
        ["train", "folder", "{root}/data", "--out", "{root}/run", "--set", "train.lr=-1"],
        None,
        "lr must be > 0",
    ),
    (
        ["train", "folder", "{root}/data", "--out", "{root}/run", "--set", "train.batch_size=0"],
        None,
        "batch_size must be >= 1",
    ),
    (
        ["train", "folder", "{root}/data", "--out", "{root}/run", "--set", "model.encoder.layer.dropout=2"],
        None,
        "dropout must be in [0, 1)",
    ),
    (["train", "folder", "{root}/data", "--out", "{root}/run", "--resume", "--force"], None, "give one"),
    (["train", "folder", "{root}/data", "--out", "{root}/data/run"], None, "inside the dataset folder"),
    (
        ["train", "folder", "{root}/data", "--out", "{root}/run", "--cache", "{root}/good.wav"],
        None,
        "not a folder",
    ),
    (
        ["train", "folder", "{root}/data", "--out", "{root}/run", "--set", "train.lr=inf"],
        None,
        "finite number",
    ),
    (
        ["train", "folder", "{root}/data", "--out", "{root}/run", "--set", "train.augment.gain_db=1000"],
        None,
        "gain_db must be in [0, 40.0]",
    ),
    (
        [
            "train",
            "folder",
            "{root}/data",
            "--out",
            "{root}/run",
            "--set",
            "train.epochs=1",
            "--threads",
            "1",
        ],
        None,
        "the valid split has no clips",
    ),
    (["train", "gtzan", "{root}/data", "--out", "{root}/run"], None, "{root}/data"),
    (["train", "folder", "{root}/data", "--out", "{root}/run", "--jobs", "0"], None, "'--jobs'"),
    (["data", "download", "nosuch", "--out", "{root}/dl"], None, "unknown dataset 'nosuch'"),
    (["data", "download", "gtzan", "--out", "{root}/dl", "--sha256", "xyz"], None, "64 hex digits"),
    (["data", "synth", "--out", "{root}/s", "--per-genre", "0"], None, "'--per-genre'"),
    (["data", "synth", "--out", "{root}/s", "--seconds", "abc"], None, "'--seconds'"),
    (["data", "synth", "--out", "{root}/good.wav"], None, "good.wav"),
    (["features", "{root}/missing.wav", "--cache", "{root}/cache"], None, "missing.wav"),
    (["features", "{root}/good.wav", "--cache", "{root}/cache", "--kind", "nope"], None, "'--kind'"),
    (["bench", "nope"], None, "No such command 'nope'"),
    (["bench", "encoder", "--windows", "abc"], None, "windows"),
    (["bench", "--suite", "stream"], None, "No such option"),
    (["recipes", "show", "nosuch"], None, "nosuch"),
]


def _argv(case: list[str], root) -> list[str]:
    return [a.replace("{root}", str(root)) for a in case]


def _check(status: int, out: str, err: str, expected: str, root) -> None:
    expected = expected.replace("{root}", str(root))
    assert status != 0, (out, err)
    assert "Traceback" not in out + err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], err


@pytest.mark.parametrize("case,stdin,expected", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_every_command_fails_in_one_line(case, stdin, expected, files, capsys, monkeypatch):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    status = run(_argv(case, files))
    captured = capsys.readouterr()
    _check(status, captured.out, captured.err, expected, files)


SUBPROCESS_CASES = [c for c in CASES if c[1] is not None] + [CASES[0], CASES[12], CASES[29]]


@pytest.mark.parametrize(
    "case,stdin,expected", SUBPROCESS_CASES, ids=[" ".join(c[0])[:60] for c in SUBPROCESS_CASES]
)
def test_the_real_command_fails_in_one_line(case, stdin, expected, files):
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", *_argv(case, files)],
        input=stdin or b"",
        capture_output=True,
        timeout=120,
        cwd=files,
    )
    _check(done.returncode, done.stdout.decode(), done.stderr.decode(), expected, files)
