"""`coaudio features` end to end: real files, a corrupt one, caching, invalidation.

Real processes where the process matters (worker processes, JSON lines on stdout and the
summary on stderr, SIGKILL and Ctrl-C mid-run); the rest through the same entry point in
process (``cli``, tests/cli/conftest.py), with ``--jobs 1`` where workers are not the point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile
import torch

from coaudio.audio import read_audio
from coaudio.features.cache import FeatureConfig, file_key, find_audio, load_entry
from coaudio.features.logmel import log_mel


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coaudio", *args], capture_output=True, text=True, timeout=300
    )


def _library(root):
    rng = np.random.default_rng(0)
    (root / "a" / "b").mkdir(parents=True)
    soundfile.write(root / "one.wav", rng.standard_normal(16000 * 2) * 0.1, 16000)
    soundfile.write(root / "a" / "two.flac", rng.standard_normal((22050 * 3, 2)) * 0.1, 22050)
    soundfile.write(
        root / "a" / "b" / "three.ogg",
        rng.standard_normal(44100) * 0.1,
        44100,
        format="OGG",
        subtype="VORBIS",
    )
    (root / "a" / "broken.wav").write_bytes(b"not riff at all" * 100)
    (root / "a" / "._one.wav").write_bytes(b"\x00" * 211)  # macOS resource fork: ignored
    (root / "notes.txt").write_text("not audio")


def test_extracts_caches_and_reports_failures(tmp_path, cli):
    root, cache = tmp_path / "music", tmp_path / "cache"
    _library(root)
    assert [p.name for p in find_audio([root])] == ["three.ogg", "broken.wav", "two.flac", "one.wav"]

    first = _run("features", str(root), "--cache", str(cache), "--jobs", "2", "--jsonl")
    assert first.returncode == 1  # one file failed
    records = {
        json.loads(line)["path"].split("/")[-1]: json.loads(line) for line in first.stdout.splitlines()
    }
    assert records["broken.wav"]["status"] == "failed"
    assert "cannot decode" in records["broken.wav"]["error"]
    assert {records[n]["status"] for n in ("one.wav", "two.flac", "three.ogg")} == {"extracted"}
    assert "broken.wav" in first.stderr and "3 extracted, 0 cached, 1 failed" in first.stderr

    config = FeatureConfig()
    cached = load_entry(cache, config, root / "a" / "two.flac")
    assert torch.equal(cached, log_mel(read_audio(root / "a" / "two.flac")))

    again = cli("features", root, "--cache", cache, "--jobs", "1")  # in process: nothing to extract
    assert again.status == 1
    assert "0 extracted, 3 cached, 1 failed" in again.out and "broken.wav" in again.err

    before = file_key(root / "one.wav")  # editing a file invalidates just that file
    soundfile.write(root / "one.wav", np.zeros(16000), 16000)
    assert file_key(root / "one.wav") != before
    third = cli("features", root / "one.wav", "--cache", cache)
    assert third.status == 0 and "1 extracted" in third.out
    assert not list(cache.rglob("*.partial"))


def test_fail_fast_stops_at_the_first_failure(tmp_path, cli):
    root = tmp_path / "m"
    root.mkdir()
    (root / "a.wav").write_bytes(b"broken" * 50)
    soundfile.write(root / "b.wav", np.zeros(16000), 16000)
    done = cli("features", root, "--cache", tmp_path / "c", "--fail-fast", "--jobs", "1")
    assert done.status == 1
    assert "0 extracted, 0 cached, 1 failed, 1 not attempted" in done.out


def test_config_change_uses_a_separate_cache_folder(tmp_path):
    assert FeatureConfig().key() != FeatureConfig(hop_frames=48).key()
    assert FeatureConfig().key() == FeatureConfig().key()


def test_bad_arguments(tmp_path, cli, monkeypatch):
    def one_error_line(err: str) -> str:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in err, err
        return lines[0]

    done = cli("features", tmp_path / "nowhere", "--cache", tmp_path / "c")
    assert done.status == 2 and "no such file or folder" in one_error_line(done.err)
    monkeypatch.setenv("COAUDIO_MODELS", str(tmp_path / "no-models"))
    done = cli("features", tmp_path, "--cache", tmp_path / "c", "--kind", "vggish")
    assert done.status == 1 and "run 'coaudio models fetch vggish'" in one_error_line(done.err)
    done = cli("features", tmp_path, "--cache", tmp_path / "c", "--weights", "w.pth")
    assert done.status == 2 and "--kind vggish or musicnn" in one_error_line(done.err)
    assert not (tmp_path / "c").exists()  # nothing was extracted


def test_interrupted_run_leaves_only_complete_entries_and_resumes(tmp_path, cli):
    """SIGKILL, then Ctrl-C, each mid-extraction of a real process (after it has written 3 more
    entries): only complete entries are visible, and a rerun extracts only the rest."""
    import signal
    import time

    from safetensors.torch import load_file

    root, cache = tmp_path / "long", tmp_path / "cache"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(24):
        soundfile.write(root / f"clip{i:02d}.wav", rng.standard_normal(16000 * 30) * 0.1, 16000)

    def complete() -> int:
        return len(list(cache.rglob("[0-9a-f]*.safetensors")))

    for sig, status in ((signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)):
        before = complete()
        proc = subprocess.Popen(
            [sys.executable, "-m", "coaudio", "features", str(root), "--cache", str(cache), "--jobs", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 120
        while complete() < before + 3:  # complete entries only
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == status, err
        if sig == signal.SIGINT:  # Ctrl-C says what was kept, in one message, no traceback
            assert "extracts only the rest" in err and "Traceback" not in err, err
        entries = [p for p in cache.rglob("*.safetensors") if not p.name.startswith(".")]
        assert before + 3 <= len(entries) < 24
        for entry in entries:  # every visible entry is complete
            assert load_file(str(entry))["features"].shape == (2998, 64)
    done = cli("features", root, "--cache", cache, "--jobs", "1")  # the rerun: cache logic, in process
    assert done.status == 0
    n_cached = int(done.out.split(" cached")[0].split(", ")[-1])
    assert n_cached >= 6 and f"{24 - n_cached} extracted" in done.out


def test_gtzan_dataset_input(tmp_path, cli):
    from tests.data.test_gtzan import _tree

    _tree(tmp_path / "gtzan", "kaggle", per_genre=100)  # 1,000 tiny clips: --jobs 1, in process
    done = cli("features", tmp_path / "gtzan", "--dataset", "gtzan", "--cache", tmp_path / "c", "--jobs", "1")
    assert done.status == 0, done.err
    assert "999 extracted" in done.out  # jazz.00054.wav skipped with a warning
    bad = cli("features", tmp_path, "--dataset", "gtzan", "--cache", tmp_path / "c")
    flat = " ".join(bad.err.replace("│", " ").split())  # an error panel would wrap lines
    assert bad.status == 2 and "no GTZAN genre folders" in flat


def test_weight_files_are_keyed_by_content_and_hashed_once(tmp_path):
    import os

    from coaudio import digests

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"a" * 1000)
    config = FeatureConfig(kind="vggish", weights=str(weights))
    first = config.key()
    digests._digest_of.cache_clear()
    assert [config.key() for _ in range(5)] == [first] * 5
    assert digests._digest_of.cache_info().misses == 1  # one hash for many lookups
    weights.write_bytes(b"b" * 1000)  # same size, new content and mtime
    os.utime(weights, ns=(1, 2))
    assert config.key() != first


def test_the_patch_hop_defaults_to_the_recipes_for_each_kind(tmp_path):
    """0.96 s for VGGish (96 of its 10 ms frames), 0.99 s for musicnn (62 of its 16 ms frames,
    what gtzan-musicnn trains on), so features computed by hand match a recipe's cache."""
    from coaudio_cli.features import Kind, _feature_config

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    assert _feature_config(Kind.musicnn, str(weights), None, None, None).hop_frames == 62
    assert _feature_config(Kind.vggish, str(weights), None, None, None).hop_frames == 96
    assert _feature_config(Kind.musicnn, str(weights), None, None, 0.5).hop_frames == 31
