"""A built-in synthetic "genre" dataset: seconds to make, deterministic by seed.

Each genre is a recipe with its own tempo range, metre, rhythm, timbre and harmony; every clip
draws its key, tempo, melody, mix and noise at random, so clips of one genre differ while the
genres stay apart. Layout: ``<out>/<genre>/<genre>.000NN.wav`` (16 kHz, 16-bit, mono), the
same shape as GTZAN's genre folders.

Writing is interruptible: every clip is written under a hidden temporary name and renamed, so
no torn WAV ever has a final name; ``<out>/.coaudio-incomplete`` exists from the first byte
until ``<out>/.coaudio-complete`` (the settings, written last) is in place, so readers can tell
an unfinished set from a finished one, and running again with the same settings resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
GENRES = ("drone", "fourfloor", "waltz", "noiserock", "chimes")
COMPLETE = ".coaudio-complete"  # the settings of a finished set; written last
INCOMPLETE = ".coaudio-incomplete"  # present while a set is being written (or was interrupted)
FORMAT = 1  # bump whenever the same settings start giving different bytes


@dataclass(frozen=True)
class SynthConfig:
    per_genre: int = 40  # clips per genre
    seconds: float = 10.0  # clip length
    seed: int = 0


def _rng(seed: int, genre: str, index: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{genre}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _time(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _note_hz(key: float, semitones) -> np.ndarray:
    return key * 2.0 ** (np.asarray(semitones, dtype=np.float64) / 12.0)


def _hits(t: np.ndarray, times: np.ndarray, decay: float) -> np.ndarray:
    """Exponentially decaying envelopes starting at each time in ``times``."""
    env = np.zeros_like(t)
    for start in times:
        since = t - start
        mask = since >= 0
        env[mask] += np.exp(-since[mask] / decay)
    return env


def _drone(t, rng):
    key = rng.uniform(55, 90)
    chord = _note_hz(key, [0, 7, 12, rng.choice([15, 16])])
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.15) * t + rng.uniform(0, 6.3))
    return swell * sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) / (i + 1) for i, f in enumerate(chord))


def _fourfloor(t, rng):
    beat = 60.0 / rng.uniform(118, 132)
    beats = np.arange(0, t[-1], beat)
    kick = _hits(t, beats, 0.08) * np.sin(2 * np.pi * 55 * t)
    hat = _hits(t, beats + beat / 2, 0.02) * rng.standard_normal(len(t)) * 0.5
    bass = np.sign(np.sin(2 * np.pi * _note_hz(rng.uniform(40, 60), 0) * t)) * 0.2
    return kick + hat + bass


def _waltz(t, rng):
    beat = 60.0 / rng.uniform(84, 100)
    bars = np.arange(0, t[-1], 3 * beat)
    oom = _hits(t, bars, 0.15) * np.sin(2 * np.pi * rng.uniform(80, 110) * t)
    pah = (
        _hits(t, np.concatenate([bars + beat, bars + 2 * beat]), 0.1)
        * np.sin(2 * np.pi * rng.uniform(300, 400) * t)
        * 0.4
    )
    key = rng.uniform(220, 330)
    steps = rng.choice([0, 2, 4, 5, 7, 9, 11, 12], size=len(bars) * 3)
    melody_hz = np.repeat(_note_hz(key, steps), int(beat * SAMPLE_RATE) + 1)[: len(t)]
    melody = 2 * np.abs(2 * ((np.cumsum(melody_hz) / SAMPLE_RATE) % 1) - 1) - 1  # triangle
    return oom + pah + 0.3 * melody


def _noiserock(t, rng):
    beat = 60.0 / rng.uniform(150, 180)
    key = rng.uniform(82, 123)
    roots = rng.choice([0, 3, 5, 7, 10], size=int(t[-1] / (2 * beat)) + 2)
    root_hz = np.repeat(_note_hz(key, roots), int(2 * beat * SAMPLE_RATE) + 1)[: len(t)]
    phase = np.cumsum(root_hz) / SAMPLE_RATE
    guitar = np.tanh(4 * (np.sin(2 * np.pi * phase) + np.sin(2 * np.pi * 1.5 * phase)))
    snare = _hits(t, np.arange(beat, t[-1], 2 * beat), 0.05) * rng.standard_normal(len(t))
    return 0.5 * guitar + 0.6 * snare


def _chimes(t, rng):
    key = rng.uniform(660, 990)
    starts = np.sort(rng.uniform(0, t[-1], size=int(rng.uniform(1.0, 2.0) * t[-1])))
    out = np.zeros_like(t)
    for start in starts:
        f = _note_hz(key, rng.choice([0, 2, 4, 7, 9, 12, 14]))
        since = t - start
        mask = since >= 0
        out[mask] += np.exp(-since[mask] / 0.6) * (
            np.sin(2 * np.pi * f * since[mask]) + 0.3 * np.sin(2 * np.pi * 2.76 * f * since[mask])
        )
    return out


RECIPES: dict[str, Callable] = dict(zip(GENRES, (_drone, _fourfloor, _waltz, _noiserock, _chimes)))


def synthesize(genre: str, index: int, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """One clip as ``(N,)`` float32 in [-1, 1] at 16 kHz."""
    rng = _rng(seed, genre, index)
    t = _time(seconds)
    clip = RECIPES[genre](t, rng) + rng.uniform(0.005, 0.03) * rng.standard_normal(len(t))
    return (clip / (np.abs(clip).max() + 1e-9) * rng.uniform(0.5, 0.9)).astype(np.float32)


class SynthError(Exception):
    """A folder the synthetic set will not be written into; the message says why."""


@dataclass(frozen=True)
class SynthResult:
    paths: list[Path]  # every clip of the set, in order
    written: int  # clips written by this call
    kept: int  # clips an interrupted run had already written (kept as they are)
    already_complete: bool  # the folder already held this exact set: nothing was done
    others: list[Path]  # files that are not ours, left alone by ``force``


def clip_paths(out: str | Path, config: SynthConfig) -> list[Path]:
    """Where each clip of ``config`` goes, genre by genre."""
    return [Path(out) / g / f"{g}.{i:05d}.wav" for g in GENRES for i in range(config.per_genre)]


def _record(config: SynthConfig) -> dict:
    """What the markers hold: enough to tell whether a folder was made with these settings."""
    return {
        "format": FORMAT,
        "per_genre": config.per_genre,
        "seconds": float(config.seconds),
        "seed": config.seed,
        "clips": config.per_genre * len(GENRES),
    }


def _settings(record: dict) -> tuple:
    return tuple(record.get(k) for k in ("format", "per_genre", "seconds", "seed"))


def _describe(record: dict) -> str:
    """The settings in a marker, as the options that made them."""
    if not all(k in record for k in ("per_genre", "seconds", "seed")):
        return "unreadable settings"
    options = f"--per-genre {record['per_genre']} --seconds {record['seconds']} --seed {record['seed']}"
    return options if record.get("format") == FORMAT else f"{options}, by another version of coaudio"


def _read_marker(path: Path) -> dict | None:
    """A marker's record; None if there is none, {} if it is damaged (so it matches nothing)."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _is_temp(path: Path) -> bool:
    """A temporary file of ours (a clip's or a marker's), left behind if a write was killed;
    precise, so that a user's own hidden files are never taken for one and removed."""
    if not (path.name.startswith(".") and path.name.endswith(".tmp")):
        return False
    final = path.with_name(path.name[1 : -len(".tmp")])
    return final.name in (COMPLETE, INCOMPLETE) or _is_our_clip(final)


def _remove_temps(out: Path) -> None:
    for folder in (out, *(out / g for g in GENRES)):
        if folder.is_dir():
            for path in folder.iterdir():
                if _is_temp(path):
                    path.unlink()


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` to a hidden temporary name next to ``path``, then rename it into place: a
    kill at any moment leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there if ``write`` failed


def _write_marker(path: Path, record: dict) -> None:
    _replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(record, sort_keys=True) + "\n"))


def _write_clip(path: Path, clip: np.ndarray) -> None:
    import soundfile  # only needed when writing; reading markers stays light

    # The temporary name has no .wav suffix, so the format is named explicitly.
    _replace_atomically(
        path, lambda tmp: soundfile.write(tmp, clip, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    )


def _is_our_clip(path: Path) -> bool:
    """A clip name of some synthetic set (any size), in its genre's folder."""
    genre = path.parent.name
    return genre in GENRES and re.fullmatch(rf"{genre}\.\d{{5,}}\.wav", path.name) is not None


def _others(out: Path, expected: set[Path]) -> list[Path]:
    """Entries of ``out`` that a run with these settings would not have written."""
    found = []
    for entry in sorted(out.iterdir()):
        if entry.name in (COMPLETE, INCOMPLETE) or _is_temp(entry):
            continue
        if entry.name in GENRES and entry.is_dir():
            found += [p for p in sorted(entry.iterdir()) if p not in expected and not _is_temp(p)]
        else:
            found.append(entry)
    return found


def _plan(out: Path, config: SynthConfig, force: bool) -> str:
    """What to do with ``out``: "write" (the missing clips), "replace" (remove an earlier set
    first) or "complete" (nothing); raises SynthError where writing would mix two sets or
    write into a folder of the user's."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out} is a file, not a folder")
    if not out.exists():
        return "write"
    if force:
        return "replace"
    unfinished, finished = _read_marker(out / INCOMPLETE), _read_marker(out / COMPLETE)
    marker = unfinished if unfinished is not None else finished  # a run in progress wins
    if marker is None:
        if any(not _is_temp(entry) for entry in out.iterdir()):
            raise SynthError(
                f"{out} is not empty and holds no synthetic set: use another --out, "
                "or --force to write one into it"
            )
        return "write"
    if _settings(marker) != _settings(_record(config)):
        raise SynthError(
            f"{out} holds a synthetic set made with other settings ({_describe(marker)}): "
            "use another --out, or --force to replace it"
        )
    paths = clip_paths(out, config)
    if unfinished is None and all(p.exists() for p in paths):
        return "complete"
    if unfinished is not None and unfinished.get("replacing"):
        return "replace"  # a --force run was stopped while removing the old set: finish that
    others = _others(out, set(paths))
    if others:
        raise SynthError(
            f"{out} holds files that `coaudio data synth` did not write "
            f"({len(others)}, e.g. {others[0].relative_to(out)}): use another --out, "
            "or --force to write the set anyway"
        )
    return "write"


def _remove_earlier_set(out: Path, record: dict) -> None:
    """Delete the clips and markers of whatever set is in ``out``, under a marker saying so:
    a kill half-way must not leave old clips that a resumed run would take for its own."""
    _write_marker(out / INCOMPLETE, {**record, "replacing": True})
    (out / COMPLETE).unlink(missing_ok=True)
    for genre in GENRES:
        if (out / genre).is_dir():
            for path in (out / genre).iterdir():
                if _is_our_clip(path):
                    path.unlink()


def write_dataset(
    out: str | Path,
    config: SynthConfig = SynthConfig(),
    on_clip: Callable[[Path], None] | None = None,
    force: bool = False,
) -> SynthResult:
    """Write every clip of ``config`` into ``out``, resuming an interrupted run.

    Clips an interrupted run with the same settings already wrote are kept (each is complete,
    being renamed into place, and the same settings always give the same bytes). A folder that
    holds a set with other settings, or files of its own, is refused with SynthError unless
    ``force``: then the earlier set's clips are removed and everything is written again; other
    files are left alone and listed in the result. ``on_clip`` is called for every clip,
    kept or written."""
    out = Path(out)
    plan = _plan(out, config, force)
    paths = clip_paths(out, config)
    if plan == "complete":
        return SynthResult(paths, 0, 0, True, [])
    record = _record(config)
    out.mkdir(parents=True, exist_ok=True)
    if plan == "replace":
        _remove_earlier_set(out, record)
    _write_marker(out / INCOMPLETE, record)  # before any clip, so readers see an unfinished set
    (out / COMPLETE).unlink(missing_ok=True)
    _remove_temps(out)  # a killed run's half-written files
    written = _write_clips(out, config, paths, on_clip)
    _write_marker(out / COMPLETE, record)  # last: from here on the set is whole
    (out / INCOMPLETE).unlink()
    kept = len(paths) - written
    if kept:
        log.info("resumed %s: kept %d clips, wrote %d", out, kept, written)
    return SynthResult(paths, written, kept, False, _others(out, set(paths)))


def _write_clips(
    out: Path, config: SynthConfig, paths: list[Path], on_clip: Callable[[Path], None] | None
) -> int:
    """Write the clips that are missing; returns how many that was."""
    for genre in GENRES:
        (out / genre).mkdir(exist_ok=True)
    written = 0
    for path in paths:
        if not path.exists():
            genre, index = path.parent.name, int(path.name.split(".")[1])
            _write_clip(path, synthesize(genre, index, config.seconds, config.seed))
            written += 1
        if on_clip is not None:
            on_clip(path)
    return written


def unfinished(root: str | Path) -> tuple[int, int | None] | None:
    """``(clips written, clips planned)`` if a synthetic set in ``root`` is still being written
    or was interrupted, else None. Planned is None if the marker is damaged."""
    root = Path(root)
    record = _read_marker(root / INCOMPLETE)
    if record is None:
        return None
    done = sum(1 for g in GENRES if (root / g).is_dir() for p in (root / g).iterdir() if _is_our_clip(p))
    planned = record.get("clips")
    return done, planned if isinstance(planned, int) else None
