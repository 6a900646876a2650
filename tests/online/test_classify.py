"""``coaudio classify`` on a real folder tree: formats, failures, outputs, resume, torchrun."""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import soundfile
import torch

from tests.online.helpers import LABELS, batch_probs, coaudio, make_checkpoint, tone_mix

TREE = [  # (relative path, format, subtype, rate, channels, seconds)
    ("a/one.wav", "WAV", "PCM_16", 8_000, 1, 2.5),
    ("a/deeper/two.flac", "FLAC", "PCM_24", 48_000, 2, 3.0),
    ("b/three.ogg", "OGG", "VORBIS", 22_050, 2, 2.2),
    ("b/four.mp3", "MP3", "MPEG_LAYER_III", 44_100, 1, 3.1),
    ("five.au", "AU", "PCM_16", 16_000, 1, 1.8),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", hop_frames=20, window=6)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("library")
    for i, (rel, fmt, subtype, rate, channels, seconds) in enumerate(TREE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(
            root / rel, tone_mix(seconds, rate, channels, seed=i), rate, format=fmt, subtype=subtype
        )
    (root / "b" / "empty.wav").write_bytes(b"")
    (root / "b" / "corrupt.flac").write_bytes(b"fLaC" + bytes(300))
    (root / "a" / "short.wav").parent.mkdir(exist_ok=True)
    soundfile.write(root / "a" / "short.wav", tone_mix(0.5, 16_000), 16_000)
    (root / "a" / "notes.txt").write_text("not audio")  # ignored inside folders
    (root / ".hidden").mkdir()
    soundfile.write(root / ".hidden" / "skip.wav", tone_mix(2.0, 16_000), 16_000)
    return root


def _jsonl(done) -> list[dict]:
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def test_a_folder_tree_gives_one_result_per_file_in_order(checkpoint, tree, tmp_path):
    done = coaudio(
        "classify",
        checkpoint,
        tree,
        "--format",
        "jsonl",
        "--top-k",
        5,
        "--timeline",
        "--jobs",
        2,
        "--journal",
        tmp_path / "j",
        timeout=300,
    )
    assert done.returncode == 1  # some files failed
    records = _jsonl(done)
    shown = [r["path"] for r in records]
    expected = sorted(
        [str(tree / rel) for rel, *_ in TREE]
        + [str(tree / "b" / "empty.wav"), str(tree / "b" / "corrupt.flac"), str(tree / "a" / "short.wav")]
    )
    assert shown == expected
    by_path = {r["path"]: r for r in records}
    assert by_path[str(tree / "b" / "empty.wav")]["error"] == "empty file (0 bytes)"
    assert "cannot decode" in by_path[str(tree / "b" / "corrupt.flac")]["error"]
    assert "too short" in by_path[str(tree / "a" / "short.wav")]["error"]
    for rel, _, _, rate, channels, seconds in TREE:
        record = by_path[str(tree / rel)]
        reference = batch_probs(checkpoint, tree / rel)  # the regular model, window by window
        assert record["status"] == "ok" and record["error"] == ""
        assert (record["sample_rate"], record["channels"]) == (rate, channels)
        assert record["hops"] == reference.shape[0] and abs(record["duration_s"] - seconds) < 0.01
        mean = reference.mean(0)
        got = torch.tensor([{t["label"]: t["p"] for t in record["top"]}[label] for label in LABELS])
        assert (got - mean).abs().max() < 1e-5
        assert record["label"] == LABELS[int(mean.argmax())] and record["top"][0]["label"] == record["label"]
        assert [h["label"] for h in record["timeline"]] == [LABELS[i] for i in reference.argmax(1)]
        assert max(abs(h["p"] - float(p)) for h, p in zip(record["timeline"], reference.max(1).values)) < 1e-5
    stderr = done.stderr.decode()
    assert "5 of 8 files classified" in stderr and "3 failed" in stderr
    assert f"failed {tree / 'b' / 'empty.wav'}: empty file" in stderr
    assert not (tmp_path / "j").exists()  # a complete run needs no journal


def test_csv_table_glob_and_output_file(checkpoint, tree, tmp_path, cli):
    # in process: output formats and file selection; stdout/stderr of a real process are the
    # folder-tree and resume tests' part
    done = cli(
        "classify",
        checkpoint,
        tree / "a",
        tree / "five.au",
        "--format",
        "csv",
        "-o",
        tmp_path / "r.csv",
        "--jobs",
        1,
        "--journal",
        tmp_path / "j",
    )
    assert done.status == 1 and done.out == ""  # short.wav cannot be classified
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert list(rows[0]) == ["path", "status", "duration_s", "hops", "label", "confidence", "top", "error"]
    assert [r["path"] for r in rows] == [
        str(tree / "a" / "deeper" / "two.flac"),
        str(tree / "a" / "one.wav"),
        str(tree / "a" / "short.wav"),
        str(tree / "five.au"),
    ]
    done = cli(
        "classify",
        checkpoint,
        tree,
        "--glob",
        "*.mp3",
        "--format",
        "csv",
        "--timeline",
        "--journal",
        tmp_path / "j",
    )
    rows = list(csv.DictReader(io.StringIO(done.out)))
    assert done.status == 0 and {r["path"] for r in rows} == {str(tree / "b" / "four.mp3")}
    assert list(rows[0]) == ["path", "hop", "start_s", "end_s", "label", "confidence", "error"]
    assert [int(r["hop"]) for r in rows] == list(range(len(rows)))
    done = cli("classify", checkpoint, tree / "five.au", "--format", "table", "--journal", tmp_path / "j")
    assert done.status == 0 and "five.au" in done.out and "confidence" in done.out


def test_fail_fast_and_bad_arguments(checkpoint, tree, tmp_path, cli):
    # in process: the exit status a real process passes on is the folder-tree test's part
    done = cli("classify", checkpoint, tree / "b", "--fail-fast", "--jobs", 1, "--journal", tmp_path / "j")
    assert done.status == 1
    assert [json.loads(line)["path"] for line in done.out.splitlines()] == [
        str(tree / "b" / "corrupt.flac")  # stopped at the first
    ]
    done = cli("classify", checkpoint, tmp_path / "nothing-here.wav")  # named files are always tried
    assert done.status == 1 and "no such file" in done.out
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    done = cli("classify", checkpoint, empty)
    assert done.status == 1 and "no audio files under" in done.err
    done = cli("classify", checkpoint, tree, "--format", "xml")
    assert done.status == 2 and "'--format'" in done.err and "is not one of" in done.err


CLIPS = 14


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Clips for the interrupted, resumed and sharded runs (read only: each run has its journal)."""
    root = tmp_path_factory.mktemp("clips") / "lib"
    root.mkdir()
    for i in range(CLIPS):
        soundfile.write(root / f"clip{i:02d}.wav", tone_mix(2.5, 16_000, seed=100 + i), 16_000)
    return root


@pytest.fixture(scope="module")
def uninterrupted(checkpoint, library, tmp_path_factory) -> bytes:
    """The JSON lines of one plain single-process run over ``library``, shared by the tests that
    compare an interrupted, resumed or sharded run with it (run in process: the process-level
    parts are those runs')."""
    from coaudio_cli.main import run

    where = tmp_path_factory.mktemp("uninterrupted")
    args = ["classify", checkpoint, library, "--jobs", 1, "--journal", where / "j", "-o", where / "out.jsonl"]
    assert run([str(a) for a in args]) == 0
    return (where / "out.jsonl").read_bytes()


def test_resume_after_sigkill_gives_the_uninterrupted_output(checkpoint, library, uninterrupted, tmp_path):
    """Killed after three files, resumed: the output of one plain run. The fourth file is ten
    minutes long while the run is killed (the others take milliseconds), so the kill lands in
    it however busy the machine; the resumed run reads the real fourth file."""
    copy, names = tmp_path / "lib", sorted(p.name for p in library.iterdir())
    shutil.copytree(library, copy)
    soundfile.write(copy / names[3], tone_mix(600.0, 16_000, seed=7), 16_000)
    journal = tmp_path / "j1"
    args = [sys.executable, "-m", "coaudio", "classify", str(checkpoint), *(str(copy / n) for n in names)]
    args += ["--jobs", "1", "--journal", str(journal), "-o", str(tmp_path / "out.jsonl")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(journal.glob("*/rank-0.jsonl"))
        if parts and parts[0].read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = parts[0].read_bytes().count(b"\n")
    assert finished == 3 and not (tmp_path / "out.jsonl").exists()
    shutil.copy(library / names[3], copy / names[3])
    with open(parts[0], "ab") as f:
        f.write(b'{"key": "torn by the kill')  # what a kill mid-write leaves behind
    resumed = coaudio(
        "classify",
        checkpoint,
        copy,
        "--jobs",
        1,
        "--journal",
        journal,
        "--resume",
        "-o",
        tmp_path / "out.jsonl",
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert resumed.stdout == b""  # with -o, stdout carries nothing (results, progress, summary)
    assert f"resuming: {finished} of {CLIPS} files already done" in resumed.stderr.decode()
    output = (tmp_path / "out.jsonl").read_bytes().replace(str(copy).encode(), str(library).encode())
    assert output == uninterrupted  # no duplicates, no losses
    assert not journal.exists()


def test_torchrun_shards_files_and_rank_0_merges(checkpoint, library, uninterrupted, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "coaudio",
            "classify",
            str(checkpoint),
            str(library),
            "--jobs",
            "1",
            "--journal",
            str(tmp_path / "j1"),
            "-o",
            str(tmp_path / "merged.jsonl"),
            "-q",
        ],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert (tmp_path / "merged.jsonl").read_bytes() == uninterrupted
    assert done.stderr.decode().count(f"{CLIPS} of {CLIPS} files classified") == 1  # rank 0 alone reports


def test_ctrl_c_keeps_finished_files_for_resume(checkpoint, library, uninterrupted, tmp_path, cli):
    journal = tmp_path / "j"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coaudio",
            "classify",
            str(checkpoint),
            str(library),
            "--jobs",
            "1",
            "--journal",
            str(journal),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.stat().st_size for p in journal.glob("*/rank-0.jsonl")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out == b"", err.decode()
    assert "continue with:" in err.decode() and "Traceback" not in err.decode()
    assert err.decode().strip().splitlines()[-1].strip().endswith("--resume")  # the command to run
    # the resume itself in process (a resume after a real kill runs as a process above)
    resumed = cli("classify", checkpoint, library, "--jobs", 1, "--journal", journal, "--resume")
    assert resumed.status == 0 and resumed.out.encode() == uninterrupted
    assert "resuming:" in resumed.err


def test_the_reader_thread_hands_over_blocks_and_errors_in_order():
    from coaudio.audio import AudioError
    from coaudio.online.classify import _prefetch

    consumed = []

    def blocks():
        for i in range(5):
            consumed.append(i)
            yield i
        raise AudioError("x.mp3", "decoding failed after 5.00 s")

    reader = _prefetch(blocks(), depth=2)
    assert next(reader) == 0
    time.sleep(0.2)
    assert len(consumed) <= 4  # the reader stays at most `depth` blocks ahead (+1 in hand)
    rest = []
    with pytest.raises(AudioError, match="decoding failed"):
        for block in reader:
            rest.append(block)
    assert rest == [1, 2, 3, 4]
