"""Splits over recordings, not files: clips of one recording stay on one side.

A *group* is a recording: the files whose path (relative to the dataset folder, posix form)
gives the same first capture group of a regex. A file the regex does not match is a group of
its own. Groups are what gets shuffled and cut, so no recording straddles train and test.

Both the 80/10/10 split and the K folds are stratified by label (a group's label is the most
common label among its files), so every split sees the labels in about the dataset's
proportions, and seeded, so the same files and seed always give the same split.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from coaudio.data.tracks import DatasetError, Track

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Groups:
    """Files by recording, in a stable order (sorted keys, files sorted by track id)."""

    members: dict[str, list[Track]]
    unmatched: int  # files the regex did not match (each its own group)
    mixed: int  # groups holding files of more than one label

    def label(self, key: str) -> str:
        """The most common label of a group (ties: the first by name)."""
        counts = Counter(t.label for t in self.members[key])
        return min(counts, key=lambda label: (-counts[label], label))

    def by_label(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for key in self.members:
            found.setdefault(self.label(key), []).append(key)
        return dict(sorted(found.items()))

    def tracks(self, keys) -> list[Track]:
        return sorted((t for key in keys for t in self.members[key]), key=lambda t: t.track_id)


def _by_id(track: Track) -> str:
    return track.track_id


def relative_path(track: Track, root: Path) -> str:
    """The file's path relative to the dataset folder, posix form (what --group searches)."""
    return Path(os.path.relpath(os.path.abspath(track.path), os.path.abspath(root))).as_posix()


def group_tracks(tracks: list[Track], root: Path, pattern: re.Pattern | None) -> Groups:
    """Group ``tracks`` by the first capture group of ``pattern``; None: every file alone."""
    members: dict[str, list[Track]] = {}
    unmatched = 0
    for track in sorted(tracks, key=lambda t: t.track_id):
        path = relative_path(track, root)
        found = pattern.search(path) if pattern is not None else None
        name = found.group(1) if found is not None else None
        if pattern is not None and name is None:
            unmatched += 1
        # "\0" cannot occur in a path: a file alone never joins a recording of the same name
        members.setdefault(name if name is not None else f"\0{path}", []).append(track)
    if pattern is not None and unmatched == len(tracks):
        raise DatasetError(
            f"--group '{pattern.pattern}' matches none of the {len(tracks)} file paths under {root} "
            f"(it is searched in paths such as '{relative_path(tracks[0], root)}')"
        )
    mixed = sum(len({t.label for t in files}) > 1 for files in members.values())
    return Groups(dict(sorted(members.items())), unmatched, mixed)


def _stratified_order(groups: Groups, rng: random.Random) -> list[str]:
    """Every group once, ordered so that any prefix holds each label in about its share.

    Within a label the groups are shuffled and given evenly spaced, jittered positions in
    [0, 1); sorting all groups by position interleaves the labels. Cutting that order at 80%
    and 90% then puts about 80/10/10 of *every* label's groups into train/valid/test, while the
    rounding is settled once over all groups (per label, small labels would round to nothing).
    """
    placed = []
    for keys in groups.by_label().values():
        rng.shuffle(keys)
        placed += [((i + rng.random()) / len(keys), key) for i, key in enumerate(keys)]
    return [key for _, key in sorted(placed)]


def _sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Groups per split: every split with a share gets at least one group."""
    valid = max(1, round(fractions[1] * n)) if fractions[1] else 0
    test = max(1, round(fractions[2] * n)) if fractions[2] else 0
    return n - valid - test, valid, test


def grouped_split(
    groups: Groups, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Track]]:
    """Train/valid/test over groups, stratified by label, seeded."""
    needed = sum(1 for f in fractions if f)
    if len(groups.members) < needed:
        raise DatasetError(
            f"found {len(groups.members)} recording(s) (groups); a split into train, valid and test "
            f"needs at least {needed}: add files, or check --group"
        )
    order = _stratified_order(groups, random.Random(seed))
    n_train, n_valid, _ = _sizes(len(order), fractions)
    parts = (order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :])
    return {name: groups.tracks(keys) for name, keys in zip(SPLITS, parts)}


def group_folds(groups: Groups, k: int, seed: int) -> list[list[Track]]:
    """``k`` folds of whole groups, each label's files spread evenly over the folds.

    Within a label, groups go largest first (random among equal sizes) to the fold holding the
    fewest files of that label, then the fewest files overall: file counts stay balanced even
    when recordings differ in length. Ties go by a shuffled fold order, so fold 1 is not
    always the fullest.
    """
    if len(groups.members) < k:
        raise DatasetError(
            f"{k} folds need at least {k} recordings (groups); found {len(groups.members)}: use fewer folds"
        )
    rng = random.Random(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    per_label = [Counter() for _ in range(k)]
    total = [0] * k
    for label, keys in groups.by_label().items():
        rng.shuffle(keys)
        keys.sort(key=lambda key: -len(groups.members[key]))  # stable: shuffled among equals
        tie = rng.sample(range(k), k)
        for key in keys:
            fold = min(range(k), key=lambda i: (per_label[i][label], total[i], tie[i]))
            folds[fold].append(key)
            per_label[fold][label] += len(groups.members[key])
            total[fold] += len(groups.members[key])
    return [groups.tracks(keys) for keys in folds]


def fold_split(parts: list[list[Track]], k: int, groups: Groups, seed: int) -> dict[str, list[Track]]:
    """Fold ``k`` (0-based) of ``parts``: part k tests, the next part validates, the rest
    trains. With 2 parts there is no third one to train on: the other part is split by group
    into train and valid (80/20, stratified, seeded)."""
    count = len(parts)
    test = parts[k]
    if count >= 3:
        valid = (k + 1) % count
        train = sorted((t for i, part in enumerate(parts) if i not in (k, valid) for t in part), key=_by_id)
        return {"train": train, "valid": parts[valid], "test": test}
    other = {t.track_id for t in parts[1 - k]}
    rest = Groups(  # groups are whole within a part: one file tells which part a group is in
        {key: files for key, files in groups.members.items() if files[0].track_id in other},
        groups.unmatched,
        groups.mixed,
    )
    halves = grouped_split(rest, seed * 1_000_003 + k, (0.8, 0.2, 0.0))
    return {"train": halves["train"], "valid": halves["valid"], "test": test}
