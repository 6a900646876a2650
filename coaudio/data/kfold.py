"""K-fold cross-validation over recordings: which files each fold trains, selects and tests on.

The folds are made once (grouped by ``--group``'s recording, else by file; stratified by
label; seeded) and recorded as lists of paths relative to the dataset folder, so a resumed
cross-validation re-reads exactly the folds it started with, even if files were added since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coaudio.data.grouping import fold_split, group_folds, group_tracks, relative_path
from coaudio.data.split_plan import (
    FOLDS_CAVEAT,
    Split,
    SplitError,
    SplitMethod,
    SplitOptions,
    check_options,
    compile_group,
    group_notes,
)
from coaudio.data.tracks import Track, list_labelled


@dataclass
class Folds:
    """The K parts of a labelled folder; :meth:`split` gives fold k's train/valid/test."""

    root: Path
    parts: list[list[Track]]
    regex: str | None
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.parts)

    def method(self, fold: int | None = None) -> SplitMethod:
        """Fold ``fold`` (1-based), or the whole cross-validation when None."""
        return SplitMethod("fold", seed=self.seed, regex=self.regex, fold=fold, folds=self.count)

    def split(self, fold: int) -> Split:
        """Fold ``fold`` (1-based): its part tests, the next validates, the rest trains (with
        two folds the other part is split into train and valid by recording). Folds by file
        (no --group) carry the random fallback's caveat: they leak in the same way."""
        every = [t for part in self.parts for t in part]
        pattern = compile_group(self.regex) if self.regex else None
        groups = group_tracks(every, self.root, pattern)
        caveat = None if self.regex else FOLDS_CAVEAT
        return Split(fold_split(self.parts, fold - 1, groups, self.seed), self.method(fold), caveat=caveat)

    def assignment(self) -> list[list[str]]:
        """Each part's files relative to the dataset folder (what folds.json records)."""
        return [[relative_path(t, self.root) for t in part] for part in self.parts]

    @classmethod
    def from_assignment(cls, root: Path, assignment: list[list[str]], regex: str | None, seed: int) -> Folds:
        """The folds a cross-validation recorded, re-read under ``root``; every file must exist."""
        root = Path(root)
        missing = [name for part in assignment for name in part if not (root / name).is_file()]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise SplitError(
                f"{len(missing)} file(s) of the recorded folds are not under {root} ({shown}): a resumed "
                "cross-validation needs exactly its files; restore them, or start over with --force"
            )
        parts = [[_track(root, name) for name in part] for part in assignment]
        return cls(root, parts, regex, seed)


def _track(root: Path, name: str) -> Track:
    """A recorded file as :func:`list_labelled` names it: labelled by its top folder, its id
    the path without suffix."""
    return Track(root / name, name.split("/")[0], Path(name).with_suffix("").as_posix())


def plan_folds(root: str | Path, options: SplitOptions, seed: int) -> Folds:
    """``options.folds`` folds of the labelled folder ``root``, by --group's recording or by file."""
    root = Path(root)
    check_options(options, root)
    pattern = compile_group(options.group) if options.group else None
    groups = group_tracks(list_labelled(root), root, pattern)
    parts = group_folds(groups, options.folds, seed)
    return Folds(root, parts, options.group, seed, group_notes(groups, options.group))
