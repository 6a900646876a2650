"""GTZAN (Tzanetakis & Cook 2002): 10 genres x 100 clips of ~30 s.

Two layouts are found on disk, and either one may be passed (or any folder above it):

* original archive: ``genres/<genre>/<genre>.000NN.au`` (Sun AU, 22.05 kHz)
* the Kaggle copy: ``Data/genres_original/<genre>/<genre>.000NN.wav``

Hidden files (e.g. macOS ``._*`` resource forks) are skipped. ``jazz.00054.wav`` of the Kaggle
copy is not a WAV file at all; it is left out with a warning. Tracks are identified by
``<genre>.000NN`` whatever the extension, so the split lists serve both layouts.

Splits shipped with coaudio (``coaudio/data/splits``): the fault-filtered partition of
Kereliuk, Sturm & Larsen (2015), 443/197/290 clips, which keeps artists apart across splits
and drops replicas and mislabellings. Seeded stratified k-fold and random splits are also
available; they leak artists and repetitions between splits and read about 10 points higher.
"""

from __future__ import annotations

import logging
import random
from importlib import resources
from pathlib import Path

from coaudio.data.tracks import DatasetError, Track

log = logging.getLogger(__name__)

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
CLIPS_PER_GENRE = 100
KNOWN_BAD = {"jazz.00054": "not a WAV file in the Kaggle copy (no RIFF header)"}
SPLITS = ("train", "valid", "test")


class GTZANError(DatasetError):
    """The folder is not (a complete) GTZAN."""


def find_genres_folder(root: str | Path) -> Path:
    """The folder that holds the 10 genre folders, from ``root`` or a known place below it."""
    root = Path(root)
    if not root.is_dir():
        raise GTZANError(
            f"{root}: a file, not a GTZAN folder" if root.exists() else f"{root}: no such folder"
        )
    for candidate in (
        root,
        root / "genres",
        root / "genres_original",
        root / "Data" / "genres_original",
        root / "data" / "genres_original",
    ):
        if candidate.is_dir() and any((candidate / g).is_dir() for g in GENRES):
            return candidate
    raise GTZANError(
        f"{root}: no GTZAN genre folders found (expected genres/<genre>/<genre>.000NN.au or "
        "Data/genres_original/<genre>/<genre>.000NN.wav)"
    )


def list_tracks(root: str | Path, strict: bool = True) -> list[Track]:
    """All usable tracks, sorted by id. ``strict`` requires every genre folder to exist and
    hold clips; a genre with other than 100 clips is reported with a warning."""
    folder = find_genres_folder(root)
    missing = [g for g in GENRES if not (folder / g).is_dir()]
    if missing and strict:
        raise GTZANError(f"{folder}: incomplete GTZAN, missing genre folders: {', '.join(missing)}")
    tracks = []
    for genre in GENRES:
        found = sorted(
            p
            for p in (folder / genre).glob(f"{genre}.*")
            if not p.name.startswith(".") and p.suffix.lower() in (".au", ".wav")
        )
        for path in found:
            track_id = path.stem
            if track_id in KNOWN_BAD and path.suffix.lower() == ".wav":
                log.warning("skipping %s: %s", path, KNOWN_BAD[track_id])
                continue
            tracks.append(Track(path, genre, track_id))
        count = len(found)
        if count == 0 and strict and genre not in missing:
            raise GTZANError(f"{folder / genre}: no clips (expected {genre}.000NN.au or .wav)")
        if count not in (0, CLIPS_PER_GENRE):
            log.warning("%s: %d clips instead of %d", folder / genre, count, CLIPS_PER_GENRE)
    return tracks


def _split_ids(name: str) -> list[str]:
    text = resources.files("coaudio.data").joinpath("splits", f"{name}_filtered.txt").read_text()
    return [Path(line.strip()).stem for line in text.splitlines() if line.strip()]


def filtered_split(tracks: list[Track]) -> dict[str, list[Track]]:
    """The fault-filtered partition (443/197/290 ids) restricted to the tracks present."""
    by_id = {t.track_id: t for t in tracks}
    return {name: [by_id[i] for i in _split_ids(name) if i in by_id] for name in SPLITS}


def stratified_folds(tracks: list[Track], k: int = 10, seed: int = 0) -> list[list[Track]]:
    """``k`` folds with the genres spread evenly, shuffled with ``seed``."""
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    rng = random.Random(seed)
    folds: list[list[Track]] = [[] for _ in range(k)]
    for genre in GENRES:
        members = [t for t in tracks if t.label == genre]
        rng.shuffle(members)
        for i, track in enumerate(members):
            folds[i % k].append(track)
    return [sorted(f, key=lambda t: t.track_id) for f in folds]


def random_split(tracks: list[Track], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[Track]]:
    """A seeded random train/valid/test split with the given fractions."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    order = sorted(tracks, key=lambda t: t.track_id)
    random.Random(seed).shuffle(order)
    n_train = round(fractions[0] * len(order))
    n_valid = round(fractions[1] * len(order))
    parts = (order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :])
    return dict(zip(SPLITS, parts))
