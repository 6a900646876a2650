"""What users of Unix tools expect: fast help, formats from file names, quiet broken pipes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from tests.online.helpers import make_checkpoint, tone_mix


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["stream", "--help"],
        ["train", "folder", "--help"],
        ["trian"],
        ["recipes"],
        ["evaluate", "--help"],
        ["classify", "--help"],
    ],
)
def test_help_and_typos_never_import_torch(argv):
    """Start-up time is measured by `coaudio bench startup`; here the cause is pinned:
    answering these must not load torch (1-5 s on a busy machine)."""
    code = (
        f"import sys\nfrom coaudio_cli.main import run\nstatus = run({argv!r})\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', status)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1].startswith("NO-TORCH"), done.stdout[-500:] + done.stderr


@pytest.fixture(scope="module")
def model_and_audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("conventions")
    make_checkpoint(root / "model.safetensors")
    for i in range(2):
        soundfile.write(root / f"clip{i}.wav", tone_mix(3.0, 16_000, seed=i), 16_000)
    return root


def _coaudio(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "coaudio", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "name,kind", [("genres.csv", "csv"), ("genres.jsonl", "jsonl"), ("genres.txt", "table")]
)
def test_the_output_format_follows_the_file_extension(model_and_audio, tmp_path, name, kind):
    root = model_and_audio
    done = _coaudio(
        "classify",
        root / "model.safetensors",
        root / "clip0.wav",
        root / "clip1.wav",
        "-q",
        "--jobs",
        1,
        "-o",
        tmp_path / name,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / name).read_text()
    if kind == "csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert len(rows) == 2 and rows[0]["status"] == "ok"
    elif kind == "jsonl":
        assert [json.loads(line)["status"] for line in text.splitlines()] == ["ok", "ok"]
    else:
        header, rule, *_ = text.splitlines()  # a table: the header over a rule
        assert header.split()[:2] == ["path", "status"] and set(rule) == {"─"} and "clip0.wav" in text


def test_other_spellings_of_an_extension_and_an_explicit_format(model_and_audio, tmp_path):
    """.ndjson is JSON lines too (the writer is the one run above for .jsonl); --format wins
    over any extension."""
    from coaudio_cli.classify import Format, output_format

    assert output_format(None, tmp_path / "genres.ndjson", terminal=False) == Format.jsonl
    assert output_format(None, tmp_path / "GENRES.CSV", terminal=True) == Format.csv
    root = model_and_audio
    explicit = _coaudio(
        "classify",
        root / "model.safetensors",
        root / "clip0.wav",
        "-q",
        "--jobs",
        1,
        "--format",
        "jsonl",
        "-o",
        tmp_path / "forced.csv",
    )
    assert explicit.returncode == 0 and json.loads((tmp_path / "forced.csv").read_text())["status"] == "ok"


def test_a_reader_that_stops_early_ends_the_stream_quietly(model_and_audio):
    root = model_and_audio
    long = root / "long.wav"
    soundfile.write(long, tone_mix(30.0, 16_000), 16_000)
    command = (
        f"{sys.executable} -m coaudio stream {root / 'model.safetensors'} {long} | head -1; "
        'echo "status ${PIPESTATUS[0]}"'
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[0])["hop"] == 0
    assert lines[-1] in ("status 0", "status 141")
    assert done.stderr == "", done.stderr  # no error, no traceback, no "Exception ignored"


def test_a_ctrl_c_that_surfaces_as_another_error_still_ends_as_an_interruption(monkeypatch, capsys):
    """A Ctrl-C during an import or inside a library's `except Exception` can come out as some
    other error (seen once in CI: exit 1 instead of 130); it must still read as an interruption."""
    import signal

    from coaudio_cli import main

    def interrupted_import(**_):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise AttributeError("partially initialized module 'torch' has no attribute 'nn'") from None

    def plain_defect(**_):
        raise AttributeError("a real defect")

    monkeypatch.setattr(main, "app", interrupted_import)
    assert main.run([]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted"]
    monkeypatch.setattr(main, "app", plain_defect)
    assert main.run([]) == 1
    assert "internal error (AttributeError: a real defect)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_warnings_read_like_the_clis_own_and_verbose_names_where_they_come_from(model_and_audio):
    """A log record on stderr reads 'warning: ...' (as the CLI's own warnings do), not a module path;
    --verbose adds the logger's name for a bug report."""
    model = model_and_audio / "model.safetensors"
    torn = np.zeros(16_000, "<i2").tobytes() + b"\x01"  # one byte into a sample frame at the end
    args = [sys.executable, "-m", "coaudio", "stream", model, "-", "--format", "s16le", "--sr", "16000"]
    plain = subprocess.run(args, input=torn, capture_output=True, timeout=120)
    assert plain.returncode == 0, plain.stderr.decode()
    lines = plain.stderr.decode().splitlines()
    assert "warning: stream ended inside a sample frame; dropped 1 trailing byte" in lines, lines
    assert "coaudio.online" not in plain.stderr.decode()
    verbose = subprocess.run([*args[:3], "-v", *args[3:]], input=torn, capture_output=True, timeout=120)
    assert "WARNING coaudio.online.sources: stream ended inside" in verbose.stderr.decode()
