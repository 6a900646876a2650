"""Labelled audio tracks, and reading them from a folder tree of ``<label>/<audio files>``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coaudio.audio import audio_files_under
from coaudio.data.synth import unfinished

# files only a run folder of `coaudio train` holds (a single run, or a cross-validation)
RUN_FILES = ("config.json", "folds.json", "best.safetensors", "last.safetensors")


@dataclass(frozen=True)
class Track:
    path: Path
    label: str
    track_id: str  # unique within a dataset, e.g. "blues.00012"


class DatasetError(Exception):
    """A folder that is not a usable labelled dataset; the message says why."""


def list_labelled(root: str | Path, min_labels: int = 2) -> list[Track]:
    """Every audio file under ``root/<label>/`` (any depth), labelled by its top folder.

    Hidden files and folders are skipped. Track ids are paths relative to ``root`` without
    the suffix, so they are unique and stable.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: a file, not a folder of <label>/<audio files>")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    progress = unfinished(root)  # a half-written set would train on whatever it got to
    if progress is not None:
        done, planned = progress
        raise DatasetError(
            f"{root} is an interrupted `coaudio data synth` ({done} of {planned or '?'} clips); "
            "run the same command again to finish it"
        )
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    tracks, empty = [], []
    for label in labels:
        found = audio_files_under(root / label)
        if not found:
            empty.append(label)
        tracks += [Track(f, label, f.relative_to(root).with_suffix("").as_posix()) for f in found]
    usable = len(labels) - len(empty)
    runs = [label for label in empty if any((root / label / name).is_file() for name in RUN_FILES)]
    if runs:
        raise DatasetError(
            f"{root}: {', '.join(runs)} holds a training run, not audio (an --out inside the dataset "
            f"folder): move it out of {root} and put runs elsewhere"
        )
    if empty:
        raise DatasetError(f"{root}: label folders without audio files: {', '.join(empty)}")
    if usable < min_labels:
        raise DatasetError(
            f"{root}: found {usable} label folder(s) with audio; need at least "
            f"{min_labels} (layout: {root}/<label>/<file>.wav)"
        )
    return tracks
