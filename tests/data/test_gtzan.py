"""GTZAN reader and splits, on GTZAN-shaped trees of real (tiny) audio files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile

from coaudio.data.gtzan import GENRES, GTZANError, filtered_split, list_tracks, random_split, stratified_folds


def _tree(root, layout="original", per_genre=100, skip_genre=None, seconds=0.0):
    base = root / ("genres" if layout == "original" else "Data/genres_original")
    suffix = ".au" if layout == "original" else ".wav"
    tiny = np.zeros(max(64, int(seconds * 22050)), dtype=np.float32)
    for genre in GENRES:
        if genre == skip_genre:
            continue
        (base / genre).mkdir(parents=True)
        for i in range(per_genre):
            path = base / genre / f"{genre}.{i:05d}{suffix}"
            if layout == "kaggle" and genre == "jazz" and i == 54:
                path.write_bytes(b"not riff")  # as in the Kaggle copy
                continue
            tone = tiny + 0.1 * np.sin(np.arange(len(tiny)) * (0.01 + 0.02 * GENRES.index(genre)))
            soundfile.write(path, tone.astype(np.float32), 22050, format="AU" if suffix == ".au" else "WAV")
        (base / genre / f"._{genre}.00000{suffix}").write_bytes(b"\x00" * 211)
    return base


@pytest.mark.parametrize("layout", ["original", "kaggle"])
def test_both_layouts_are_found_from_the_root_and_counted(tmp_path, layout, caplog):
    _tree(tmp_path, layout)
    with caplog.at_level(logging.WARNING):
        tracks = list_tracks(tmp_path)
    expected = 1000 if layout == "original" else 999  # jazz.00054.wav is left out
    assert len(tracks) == expected
    assert {t.label for t in tracks} == set(GENRES)
    assert not any(t.path.name.startswith(".") for t in tracks)
    if layout == "kaggle":
        assert "jazz.00054" in caplog.text and "RIFF" in caplog.text


def test_fault_filtered_split_counts_and_disjointness(tmp_path):
    _tree(tmp_path, "original")
    split = filtered_split(list_tracks(tmp_path))
    assert [len(split[s]) for s in ("train", "valid", "test")] == [443, 197, 290]
    ids = [{t.track_id for t in split[s]} for s in ("train", "valid", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(t.label == "blues" for t in split["test"]) == 31


def test_filtered_split_on_the_kaggle_copy_loses_only_jazz_00054(tmp_path):
    _tree(tmp_path, "kaggle")
    split = filtered_split(list_tracks(tmp_path))
    assert [len(split[s]) for s in ("train", "valid", "test")] == [442, 197, 290]


def test_stratified_folds_and_random_split(tmp_path):
    _tree(tmp_path, "original")
    tracks = list_tracks(tmp_path)
    folds = stratified_folds(tracks, k=10, seed=3)
    assert [len(f) for f in folds] == [100] * 10
    assert all(sum(t.label == g for t in f) == 10 for f in folds for g in GENRES)
    assert sorted(t.track_id for f in folds for t in f) == sorted(t.track_id for t in tracks)
    assert folds == stratified_folds(tracks, k=10, seed=3)
    assert folds != stratified_folds(tracks, k=10, seed=4)
    split = random_split(tracks, seed=1)
    assert [len(split[s]) for s in ("train", "valid", "test")] == [800, 100, 100]
    assert split == random_split(tracks, seed=1)
    with pytest.raises(ValueError):
        random_split(tracks, fractions=(0.5, 0.1, 0.1))


def test_wrong_or_incomplete_folders_get_clear_errors(tmp_path):
    with pytest.raises(GTZANError, match="no such folder"):
        list_tracks(tmp_path / "absent")
    (tmp_path / "random").mkdir()
    with pytest.raises(GTZANError, match="no GTZAN genre folders"):
        list_tracks(tmp_path / "random")
    _tree(tmp_path / "partial", "original", per_genre=3, skip_genre="metal")
    with pytest.raises(GTZANError, match="missing genre folders: metal"):
        list_tracks(tmp_path / "partial")
    assert len(list_tracks(tmp_path / "partial", strict=False)) == 27
