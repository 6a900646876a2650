"""Reading a labelled folder tree."""

from __future__ import annotations

import pytest

from coaudio.data.synth import SynthConfig, write_dataset
from coaudio.data.tracks import DatasetError, list_labelled


def test_synthetic_set_reads_as_labelled_tracks(tmp_path):
    write_dataset(tmp_path, SynthConfig(per_genre=3, seconds=1.0))
    (tmp_path / "chimes" / "deeper").mkdir()
    (tmp_path / "chimes" / "deeper" / "extra.wav").write_bytes(
        (tmp_path / "chimes" / "chimes.00000.wav").read_bytes()
    )
    (tmp_path / "chimes" / "._chimes.00000.wav").write_bytes(b"\x00" * 10)
    (tmp_path / ".cache").mkdir()
    tracks = list_labelled(tmp_path)
    assert len(tracks) == 16
    assert {t.label for t in tracks} == {"drone", "fourfloor", "waltz", "noiserock", "chimes"}
    assert "chimes/deeper/extra" in {t.track_id for t in tracks}


def test_unusable_trees(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        list_labelled(tmp_path / "x")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(DatasetError, match="need at least 2"):
        list_labelled(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="without audio files: empty"):
        list_labelled(tmp_path)
