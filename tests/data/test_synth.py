"""The built-in synthetic dataset: deterministic, well-formed, genres that differ, and a run
that is stopped (Ctrl-C, SIGKILL) is refused by readers and resumed to the same bytes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from coaudio.data import synth
from coaudio.data.synth import (
    COMPLETE,
    GENRES,
    INCOMPLETE,
    SynthConfig,
    SynthError,
    synthesize,
    write_dataset,
)
from coaudio.data.tracks import DatasetError, list_labelled
from coaudio.features.cache import find_audio
from coaudio.features.logmel import log_mel


def test_same_seed_same_clip_other_seed_other_clip():
    a = synthesize("waltz", 3, seconds=2.0, seed=7)
    assert np.array_equal(a, synthesize("waltz", 3, seconds=2.0, seed=7))
    assert not np.array_equal(a, synthesize("waltz", 3, seconds=2.0, seed=8))
    assert not np.array_equal(a, synthesize("waltz", 4, seconds=2.0, seed=7))


def test_clips_are_well_formed():
    for genre in GENRES:
        clip = synthesize(genre, 0, seconds=3.0)
        assert clip.dtype == np.float32 and clip.shape == (48000,)
        assert np.isfinite(clip).all() and 0.4 < np.abs(clip).max() <= 0.9


def test_genres_are_separable_by_their_average_spectrum():
    feats = {
        g: torch.stack([log_mel(synthesize(g, i, seconds=4.0)).mean(0) for i in range(4)]) for g in GENRES
    }
    centroids = {g: f.mean(0) for g, f in feats.items()}
    hits = sum(
        min(centroids, key=lambda h: (centroids[h] - f).norm()) == g for g, fs in feats.items() for f in fs
    )
    assert hits >= 0.9 * 4 * len(GENRES)


def test_write_dataset_layout_and_cli(tmp_path):
    paths = write_dataset(tmp_path / "a", SynthConfig(per_genre=2, seconds=1.0, seed=1)).paths
    assert len(paths) == 10 and [p.name for p in paths[:2]] == ["drone.00000.wav", "drone.00001.wav"]
    info = soundfile.info(str(paths[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coaudio",
            "data",
            "synth",
            "--out",
            str(tmp_path / "b"),
            "--per-genre",
            "2",
            "--seconds",
            "1",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 10 clips" in done.stdout
    made = find_audio([tmp_path / "b"])
    assert [p.relative_to(tmp_path / "b") for p in made] == [
        p.relative_to(tmp_path / "a") for p in sorted(paths)
    ]
    assert all(p.read_bytes() == (tmp_path / "a" / p.relative_to(tmp_path / "b")).read_bytes() for p in made)


# Long enough (~0.7 s of synthesis) that a signal sent once the first clip exists lands mid-run.
SLOW = ["--per-genre", "5", "--seconds", "8"]
SLOW_CONFIG = SynthConfig(per_genre=5, seconds=8.0)


def _synth_cli(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coaudio", "data", "synth", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _stop_mid_run(out: Path, sig: int, *args: str) -> subprocess.CompletedProcess:
    """Start ``coaudio data synth``, send ``sig`` as soon as its first clip exists, wait for it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "coaudio", "data", "synth", "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(out.glob("*/*.wav")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(sig)  # (a no-op if it already ended: the caller's checks then say why)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden ones included, by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(done: subprocess.CompletedProcess, why: str) -> None:
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and why in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_killed_run_is_refused_by_readers_then_resumed_to_the_same_bytes(tmp_path):
    out = tmp_path / "killed"
    killed = _stop_mid_run(out, signal.SIGKILL, *SLOW)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    made = sorted(out.glob("*/*.wav"))
    assert 0 < len(made) < 25 and (out / INCOMPLETE).exists() and not (out / COMPLETE).exists()
    assert all(soundfile.info(str(p)).frames == 8 * 16000 for p in made)  # no torn clip has a final name
    with pytest.raises(
        DatasetError,
        match=rf"interrupted `coaudio data synth` \({len(made)} of 25 clips\); "
        "run the same command again to finish it",
    ):
        list_labelled(out)

    resumed = _synth_cli(out, *SLOW)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed an unfinished run: kept the {len(made)} clip" in resumed.stderr  # clip(s)
    assert f"wrote {25 - len(made)} clip" in resumed.stdout and f", kept {len(made)} (" in resumed.stdout
    write_dataset(tmp_path / "whole", SLOW_CONFIG)
    assert _tree(out) == _tree(tmp_path / "whole")  # clips and marker; no temporary files left
    assert len(list_labelled(out)) == 25

    again = _synth_cli(out, *SLOW)
    assert (
        again.returncode == 0 and again.stdout.startswith("already complete: 25 clips") and not again.stderr
    )
    _refused(
        _synth_cli(out, "--per-genre", "2", "--seconds", "1", "--seed", "1"),
        "holds a synthetic set made with other settings (--per-genre 5 --seconds 8.0 --seed 0): "
        "use another --out, or --force to replace it",
    )
    assert _tree(out) == _tree(tmp_path / "whole")

    forced = _synth_cli(out, "--per-genre", "2", "--seconds", "1", "--seed", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    write_dataset(tmp_path / "small", SynthConfig(per_genre=2, seconds=1.0, seed=1))
    assert _tree(out) == _tree(tmp_path / "small")  # the earlier, larger set is gone


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    out = tmp_path / "stopped"
    stopped = _stop_mid_run(out, signal.SIGINT, *SLOW)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr == f"interrupted: {out} is unfinished; run the same command again to resume\n"
    assert not list(out.rglob("*.tmp")) and (out / INCOMPLETE).exists()  # the clip being written was removed
    resumed = _synth_cli(out, *SLOW)
    assert resumed.returncode == 0 and "resumed an unfinished run" in resumed.stderr


def test_a_folder_of_other_files_is_never_written_into_without_force(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    _refused(
        _synth_cli(tmp_path / "mine", "--per-genre", "1", "--seconds", "1"),
        "is not empty and holds no synthetic set: use another --out, or --force to write one into it",
    )
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    forced = _synth_cli(tmp_path / "mine", "--per-genre", "1", "--seconds", "1", "--force")
    assert forced.returncode == 0 and "wrote 5 clips" in forced.stdout
    assert (
        "warning: left 1 file in" in forced.stderr
        and (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    )


def test_files_added_to_an_interrupted_set_are_not_mixed_in(tmp_path):
    config = SynthConfig(per_genre=2, seconds=1.0)
    write_dataset(tmp_path, config)
    (tmp_path / INCOMPLETE).write_text((tmp_path / COMPLETE).read_text())  # as if stopped before the end
    (tmp_path / COMPLETE).unlink()
    (tmp_path / "drone" / "drone.00001.wav").rename(
        tmp_path / "drone" / ".drone.00001.wav.tmp"
    )  # killed mid-write
    (tmp_path / "drone" / "mine.wav").write_bytes(b"RIFF")
    (tmp_path / f".{INCOMPLETE}.tmp").write_text("{")  # killed while writing a marker
    with pytest.raises(SynthError, match=r"did not write \(1, e.g. drone/mine.wav\)"):
        write_dataset(tmp_path, config)
    (tmp_path / "drone" / "mine.wav").unlink()
    result = write_dataset(tmp_path, config)
    assert (result.written, result.kept) == (1, 9) and not (tmp_path / INCOMPLETE).exists()
    assert not list(tmp_path.rglob("*.tmp")) and (tmp_path / COMPLETE).exists()


def test_a_stopped_force_run_finishes_the_replacement(tmp_path):
    """Killed while --force removed the old set: old clips must not pass for new ones."""
    old, new = SynthConfig(per_genre=3, seconds=1.0, seed=0), SynthConfig(per_genre=2, seconds=1.0, seed=1)
    write_dataset(tmp_path / "set", old)
    # The state the first step of a --force run leaves: its marker written, no old clip removed yet.
    synth._write_marker(tmp_path / "set" / INCOMPLETE, {**synth._record(new), "replacing": True})
    with pytest.raises(DatasetError, match="interrupted"):
        list_labelled(tmp_path / "set")
    result = write_dataset(tmp_path / "set", new)  # the same command again, without --force
    assert (result.written, result.kept) == (10, 0)
    write_dataset(tmp_path / "ref", new)
    assert _tree(tmp_path / "set") == _tree(tmp_path / "ref")
