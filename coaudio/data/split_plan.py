"""Which files a run trains, selects and tests on, and how that was decided.

Clips cut from one recording must never straddle train and test: the test accuracy would then
measure how well the model remembers recordings, not how well it tells labels apart. A
labelled folder (``ROOT/<label>/...``) is split by the first of these that applies:

* ``file``: a CSV ``path,split`` that names each file's split (``--splits FILE``);
* ``folders``: a ``ROOT/train|valid|test/<label>/...`` layout, found on its own;
* ``group``: a regex whose first capture group names the recording (``--group REGEX``);
  80/10/10 over recordings, stratified by label, seeded (:mod:`coaudio.data.grouping`);
* ``random``: seeded 80/10/10 by file, the fallback; it leaks whenever files share a
  recording, and says so (:attr:`Split.caveat`).

``fold``: K-fold cross-validation over recordings (or files), see :class:`Folds`.

Every split carries its :class:`SplitMethod`: runs record it in ``config.json`` and every
report names it. Problems a user can fix raise :class:`SplitError` (a :class:`DatasetError`);
options that do not go together raise :class:`SplitUsageError`.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from coaudio.data.grouping import SPLITS, Groups, group_tracks, grouped_split
from coaudio.data.tracks import DatasetError, Track, list_labelled

STRADDLE = "clips of one recording may straddle train and test"
RANDOM_CAVEAT = f"{STRADDLE}: use --splits, --group or train/valid/test folders"
FOLDS_CAVEAT = f"{STRADDLE}: --group keeps each recording's clips in one fold"


class SplitError(DatasetError):
    """A split that cannot be made as asked; the message says why and what to do."""


class SplitUsageError(SplitError):
    """Split options that do not go together, or a --group regex that cannot work."""


@dataclass(frozen=True)
class SplitMethod:
    """How a run's files were divided: what ``config.json`` records and reports name."""

    method: str  # random | file | folders | group | fold | filtered | folder | given
    seed: int | None = None
    csv: str | None = None  # method "file": the CSV, absolute
    regex: str | None = None  # methods "group" and "fold" (None: folds by file)
    fold: int | None = None  # method "fold": 1-based; None describes the whole set of folds
    folds: int | None = None
    folder: str | None = None  # method "folder": what `coaudio evaluate CHECKPOINT --data` read

    def describe(self) -> str:
        by = f"by recording (--group '{self.regex}')" if self.regex else "by file"
        seed = f", seed {self.seed}" if self.seed is not None else ""
        which = f"fold {self.fold} of {self.folds}" if self.fold is not None else f"{self.folds} folds"
        return {
            "random": f"random 80/10/10 by file{seed}",
            "file": f"from the file {self.csv}",
            "folders": "the train/valid/test folders",
            "group": f"80/10/10 {by}, stratified by label{seed}",
            "fold": f"{which} {by}, stratified by label{seed}",
            "filtered": "GTZAN fault-filtered (Kereliuk, Sturm & Larsen 2015)",
            "folder": f"the folder {self.folder}",
            "given": "given by the caller",
        }.get(self.method, self.method)

    def to_dict(self) -> dict:
        record = {k: v for k, v in asdict(self).items() if v is not None}
        return {**record, "description": self.describe()}

    @classmethod
    def from_dict(cls, record: dict) -> SplitMethod:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})

    def differs_from(self, asked: SplitMethod) -> str:
        """What differs between this (a run's) split and the one options ask for; "" if none.
        The seed is the recipe's (compared with the recipe) and the fold number is the run's."""
        keys = ("method", "csv", "regex", "folds")
        if all(getattr(self, k) == getattr(asked, k) for k in keys):
            return ""
        return f'the run\'s split is "{self.describe()}" but the options ask for "{asked.describe()}"'


@dataclass
class Split:
    """Tracks per split (train, valid, test), how they were chosen, and what to tell the user."""

    splits: dict[str, list[Track]]
    method: SplitMethod
    notes: list[str] = field(default_factory=list)
    caveat: str | None = None  # why this split may read too high, and what to do instead

    @property
    def headline(self) -> str:
        """``split: <how>``; with a caveat a warning: ``warning: split: <how>; <caveat>``."""
        if self.caveat:
            return f"warning: split: {self.method.describe()}; {self.caveat}"
        return f"split: {self.method.describe()}"


@dataclass(frozen=True)
class SplitOptions:
    """The split a user asked for; all None: the folder layout, else the random fallback."""

    csv: Path | None = None
    group: str | None = None
    folds: int | None = None

    def asked(self) -> SplitMethod | None:
        """The method these options choose, for comparing with a run's on resume."""
        if self.folds is not None:
            return SplitMethod("fold", regex=self.group, folds=self.folds)
        if self.csv is not None:
            return SplitMethod("file", csv=os.path.abspath(self.csv))
        if self.group is not None:
            return SplitMethod("group", regex=self.group)
        return None


def compile_group(regex: str) -> re.Pattern:
    """``--group``'s regex, compiled; it must have a capture group (the recording's name)."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise SplitUsageError(f"--group '{regex}': not a valid regular expression ({exc})") from None
    if pattern.groups < 1:
        raise SplitUsageError(
            f"--group '{regex}' has no capture group: put the part of the path that names the "
            r"recording in parentheses, e.g. --group '([^/]+)_clip\d+\.wav$'"
        )
    return pattern


def check_out_outside(root: str | Path, out: str | Path | None) -> None:
    """Refuse a run folder ``out`` inside the dataset folder ``root`` (or ``root`` itself): its
    files would become a label folder of the dataset (and break the next run on it)."""
    if out is None:
        return
    root, out = Path(root), Path(out)
    real_root, real_out = os.path.realpath(root), os.path.realpath(out)
    if real_out == real_root or real_out.startswith(real_root.rstrip(os.sep) + os.sep):
        raise SplitUsageError(
            f"--out {out} is inside the dataset folder {root}: its files would become a label; put runs "
            "elsewhere"
        )


def check_options(options: SplitOptions, root: Path, out: Path | None = None) -> None:
    """Refuse options that contradict each other or the folder, before any work; with ``out``
    (the run folder), also one inside the dataset folder."""
    check_out_outside(root, out)
    if options.folds is not None and options.folds < 2:
        raise SplitUsageError(f"--folds {options.folds}: cross-validation needs at least 2 folds")
    if options.csv is not None and options.group is not None:
        raise SplitUsageError("--splits gives every file's split and --group makes one: give one")
    if options.csv is not None and options.folds is not None:
        raise SplitUsageError("--folds makes its own splits and --splits gives them: give one")
    given = (("--folds", options.folds), ("--splits", options.csv), ("--group", options.group))
    which = next((name for name, value in given if value is not None), None)
    if which is not None and has_split_folders(root):
        raise SplitUsageError(
            f"{root} has train/valid/test folders, which fix the split; {which} needs one folder of "
            "<label>/ folders"
        )
    if options.group is not None:
        compile_group(options.group)


def plan_split(root: str | Path, options: SplitOptions, seed: int) -> Split:
    """The train/valid/test split of the labelled folder ``root`` (not for --folds)."""
    root = Path(root)
    check_options(options, root)
    if options.csv is not None:
        return read_split_csv(Path(options.csv), root)
    if has_split_folders(root):
        return folder_split(root)
    tracks = list_labelled(root)
    if options.group is None:
        from coaudio.data.gtzan import random_split

        return Split(random_split(tracks, seed=seed), SplitMethod("random", seed=seed), caveat=RANDOM_CAVEAT)
    groups = group_tracks(tracks, root, compile_group(options.group))
    method = SplitMethod("group", seed=seed, regex=options.group)
    return Split(grouped_split(groups, seed), method, group_notes(groups, options.group))


def gtzan_split(tracks: list[Track], kind: str, seed: int) -> Split:
    """GTZAN's split by the recipe's ``data.split``: the fault-filtered partition (artists kept
    apart) or a seeded random 80/10/10, which leaks artists and repeated recordings."""
    from coaudio.data.gtzan import filtered_split, random_split

    if kind == "filtered":
        return Split(filtered_split(tracks), SplitMethod("filtered"))
    caveat = (
        "artists and repeated recordings straddle train and test (reads about 10 points high): "
        "data.split = filtered keeps them apart"
    )
    return Split(random_split(tracks, seed=seed), SplitMethod("random", seed=seed), caveat=caveat)


def group_notes(groups: Groups, regex: str | None) -> list[str]:
    """What the user should know about the grouping: files alone, recordings of two labels."""
    notes = []
    total = sum(len(files) for files in groups.members.values())
    if groups.unmatched:
        notes.append(
            f"note: {groups.unmatched} of {total} files do not match --group '{regex}'; each is a "
            "recording of its own"
        )
    if groups.mixed:
        notes.append(
            f"note: {groups.mixed} recording(s) hold files of more than one label; each is "
            "stratified under its most common label"
        )
    return notes


# --- train/valid/test folders -------------------------------------------------------------------


def _subfolders(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}


def has_split_folders(root: Path) -> bool:
    """Whether ``root`` is laid out as ``train/<label>/...`` beside ``valid/`` or ``test/``."""
    names = _subfolders(Path(root))
    return "train" in names and bool(names & {"valid", "test"})


def folder_split(root: Path) -> Split:
    """The split the ``train/``, ``valid/``, ``test/`` folders give; labels must agree."""
    others = sorted(_subfolders(root) - set(SPLITS))
    if others:
        raise SplitError(
            f"{root} has train/valid/test folders and also {', '.join(others)}: move those into one of "
            "them (the layout is <train|valid|test>/<label>/<files>)"
        )
    if not (root / "valid").is_dir():
        raise SplitError(
            f"{root} has train/ but no valid/ folder: the best checkpoint is chosen on validation clips"
        )
    splits, notes = {}, []
    for name in SPLITS:
        if not (root / name).is_dir():
            notes.append(f"warning: {root} has no {name}/ folder: the run has no {name} split")
            splits[name] = []
            continue
        found = list_labelled(root / name, min_labels=2 if name == "train" else 1)
        # ids relative to root: "train/dog/a" and "test/dog/a" are different files
        splits[name] = [Track(t.path, t.label, f"{name}/{t.track_id}") for t in found]
    notes += _label_warnings(root, splits)
    return Split(splits, SplitMethod("folders"), notes)


def _label_warnings(root: Path, splits: dict[str, list[Track]]) -> list[str]:
    """A label only valid/test has cannot be learnt (error); one they lack is not measured there."""
    return label_checks(
        splits,
        lambda name, unknown: (
            f"{root / name}: label folder(s) {', '.join(unknown)} are not in "
            f"{root / 'train'} (the model could never predict them): add them to train/ or remove them"
        ),
        lambda name, lacking: (
            f"warning: {root / name} has no files for {', '.join(lacking)}: their "
            f"accuracy is not measured on the {name} split"
        ),
    )


def label_checks(splits: dict[str, list[Track]], unknown_error, lacking_warning) -> list[str]:
    """Every label of valid/test must be in train (else :class:`SplitError` with
    ``unknown_error(split, labels)``); a label train has but a non-empty valid/test lacks is a
    warning ``lacking_warning(split, labels)``. Returns the warnings."""
    trained = {t.label for t in splits["train"]}
    warnings = []
    for name in ("valid", "test"):
        labels = {t.label for t in splits[name]}
        unknown = sorted(labels - trained)
        if unknown:
            raise SplitError(unknown_error(name, unknown))
        lacking = sorted(trained - labels)
        if lacking and splits[name]:
            warnings.append(lacking_warning(name, lacking))
    return warnings


# --- a CSV of path,split --------------------------------------------------------------------------


def read_split_csv(csv_path: Path, root: Path) -> Split:
    """The split a CSV ``path,split`` gives. Paths are relative to ``root`` (or, if that does
    not exist, to the CSV's folder) or absolute; each must be an audio file in a label folder
    of ``root``. Files of ``root`` the CSV does not name are left out (and counted)."""
    tracks = list_labelled(root)
    by_file = {os.path.realpath(t.path): t for t in tracks}
    chosen: dict[str, list[Track]] = {name: [] for name in SPLITS}
    seen: dict[str, int] = {}
    for line, text, name in _csv_rows(csv_path):
        where = f"{csv_path}, line {line}"
        if name not in SPLITS:
            raise SplitError(f"{where}: unknown split {name!r} (use train, valid or test)")
        path = _resolve(text, root, csv_path.parent, where)
        track = by_file.get(os.path.realpath(path))
        if track is None:
            raise SplitError(
                f"{where}: {text} is not an audio file in a label folder of {root} (<label>/<file>)"
            )
        if track.track_id in seen:
            raise SplitError(f"{where}: {text} is listed twice (also on line {seen[track.track_id]})")
        seen[track.track_id] = line
        chosen[name].append(track)
    empty = [name for name in SPLITS if not chosen[name]]
    if empty:
        raise SplitError(f"{csv_path}: no files for the {' and '.join(empty)} split: each split needs files")
    notes = label_checks(
        chosen,
        lambda name, unknown: (
            f"{csv_path}: label(s) {', '.join(unknown)} have files in the {name} split "
            "but none in train (the model could never predict them): put some of their files in train"
        ),
        lambda name, lacking: (
            f"warning: {csv_path} puts no files of {', '.join(lacking)} in the {name} "
            f"split: their accuracy is not measured on the {name} split"
        ),
    )
    if len(seen) < len(tracks):
        left = len(tracks) - len(seen)
        notes.append(f"note: {left} of the {len(tracks)} files under {root} are not in {csv_path}: left out")
    method = SplitMethod("file", csv=os.path.abspath(csv_path))
    return Split({k: sorted(v, key=lambda t: t.track_id) for k, v in chosen.items()}, method, notes)


def _csv_rows(csv_path: Path):
    """(line number, path, split) of every non-blank row, after checking the header."""
    if not csv_path.is_file():
        problem = "not a file" if csv_path.exists() else "no such file"
        raise SplitError(f"--splits {csv_path}: {problem}")
    try:
        lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"--splits {csv_path}: cannot read it as UTF-8 text ({exc})") from None
    rows = [(n, row) for n, row in enumerate(csv.reader(lines), start=1) if any(c.strip() for c in row)]
    header = [cell.strip().lower() for cell in rows[0][1]] if rows else []
    if "path" not in header or "split" not in header:
        found = ",".join(rows[0][1]) if rows else "an empty file"
        raise SplitError(f"{csv_path}: the first line must be the header path,split (found {found!r})")
    at_path, at_split = header.index("path"), header.index("split")
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise SplitError(f"{csv_path}, line {number}: {len(row)} column(s), the header has {len(header)}")
        yield number, row[at_path].strip(), row[at_split].strip().lower()


def _resolve(text: str, root: Path, beside: Path, where: str) -> Path:
    path = Path(text).expanduser()
    candidates = [path] if path.is_absolute() else [root / path, beside / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = " or ".join(str(c) for c in candidates)
    raise SplitError(f"{where}: {text}: no such file (looked for {looked})")
