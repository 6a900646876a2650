"""A run folder written by ``coaudio train``, and finding its data again from anywhere.

``config.json`` records each split's files three ways, so that evaluating works from any
working directory and after the data moved:

* ``data.root``: the dataset folder training read, as an absolute path;
* ``data.root_from_run``: the same folder relative to the run folder (a run and its data
  moved together, e.g. a copied project, still match);
* ``files[split]``: each file relative to the dataset folder (what ``--data DIR`` re-roots).

Runs written before this layout stored only the paths as typed at training time (relative to
the directory training ran in); those are tried as they are, then against the run folder,
and ``--data DIR`` matches them by their longest trailing part that exists under ``DIR``.

``split`` records how the files were divided (:class:`coaudio.data.split_plan.SplitMethod`):
evaluation names it, and a resumed run re-reads exactly the recorded files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from coaudio.data.tracks import Track

CONFIG = "config.json"
BEST = "best.safetensors"


class RunError(Exception):
    """A run folder that cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class SplitFiles:
    """The files of one split: ``found`` tracks and the ``missing`` paths (as recorded)."""

    found: list[Track]
    missing: list[str]
    searched: list[str]  # where missing files were looked for (for messages)


# The training loop writes config.json (with data_record's part) before its first epoch; the
# split's description reaches it through this variable, so that the loop's signature need not
# know about splits and a run is never on disk without its split.
def read_metrics(run: Path) -> list[dict]:
    """The records of ``run/metrics.jsonl``, one per finished epoch ([] before the first)."""
    file = run / "metrics.jsonl"
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def data_record(root: Path, out: Path, splits: dict, split: dict | None = None) -> dict:
    """What ``config.json`` stores to find the data again; ``splits`` maps a split name to
    objects with ``path`` (as read at training time); ``split``: how the split was made."""
    root = Path(os.path.abspath(root))
    record = {
        "data": {"root": str(root), "root_from_run": os.path.relpath(root, os.path.abspath(out))},
        "files": {
            name: [Path(os.path.relpath(os.path.abspath(c.path), root)).as_posix() for c in clips]
            for name, clips in splits.items()
        },
    }
    if split is not None:
        record["split"] = split
    return record


class RunFolder:
    """``config.json``, checkpoints and evaluation folder of one training run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunError(
                f"{self.path}: a file, not a run folder (give the folder `coaudio train --out` wrote)"
            )
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run folder (give the folder `coaudio train --out` wrote)")
        file = self.path / CONFIG
        if not file.is_file():
            raise RunError(
                f"{self.path}: not a coaudio run folder (no {CONFIG}); give the folder "
                "`coaudio train --out` wrote"
            )
        try:
            self.config = json.loads(file.read_text())
            self.labels = list(self.config["labels"])
            self.config["paths"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RunError(f"{file}: unreadable run config ({exc.__class__.__name__}: {exc})") from None

    @property
    def best(self) -> Path:
        file = self.path / BEST
        if not file.is_file():
            raise RunError(
                f"{self.path}: no {BEST} yet (training has not finished an epoch); "
                "resume it with `coaudio train ... --resume`"
            )
        return file

    @property
    def splits(self) -> list[str]:
        return list(self.config["paths"])

    @property
    def last(self) -> Path | None:
        """The full training state (what --resume continues from), if an epoch has finished."""
        file = self.path / "last.safetensors"
        return file if file.is_file() else None

    def metrics(self) -> list[dict]:
        """One record per finished epoch (``metrics.jsonl``): epoch, loss, accuracies."""
        return read_metrics(self.path)

    @property
    def default_cache(self) -> Path:
        return self.path.parent / ".coaudio-cache"

    def split_files(self, split: str, data: str | Path | None = None) -> SplitFiles:
        """Tracks of ``split`` that exist now; with ``data``, looked up under that folder."""
        if split not in self.config["paths"]:
            raise RunError(f"split {split!r} is not in this run; it has {', '.join(self.splits)}")
        recorded = self.config["paths"][split]
        relative = self.config.get("files", {}).get(split)
        candidates = self._candidates(recorded, relative, data)
        found, missing = [], []
        for index, options in enumerate(candidates):
            hit = next((p for p in options if p.is_file()), None)
            if hit is None:
                missing.append(recorded[index])
                continue
            found.append(
                Track(
                    hit,
                    self.labels[self.config["targets"][split][index]],
                    self.config["splits"][split][index],
                )
            )
        return SplitFiles(found, missing, self._searched(data))

    def _candidates(self, recorded: list[str], relative: list[str] | None, data) -> list[list[Path]]:
        if data is not None:
            base = Path(data)
            if relative is not None:
                return [[base / r] for r in relative]
            return [_suffixes_under(base, p) for p in recorded]
        roots = self._roots()
        if relative is not None:
            return [[root / r for root in roots] for r in relative]
        return [[Path(p), self.path / p] for p in recorded]

    def _roots(self) -> list[Path]:
        record = self.config.get("data", {})
        roots = [Path(record["root"])] if record.get("root") else []
        if record.get("root_from_run"):
            beside = Path(os.path.normpath(os.path.abspath(self.path / record["root_from_run"])))
            if beside not in roots:  # both name the same folder while nothing has moved
                roots.append(beside)
        return roots

    def _searched(self, data) -> list[str]:
        if data is not None:
            return [str(data)]
        return [str(r) for r in self._roots()] or ["the working directory", str(self.path)]

    @property
    def split_method(self) -> dict:
        """How the run's files were divided (``description`` says it in words)."""
        recorded = self.config.get("split")
        if isinstance(recorded, dict) and recorded.get("description"):
            return recorded
        return {
            "method": "unknown",
            "description": "not recorded (a run from before runs recorded their split)",
        }

    def recorded_split(self, root: str | Path):
        """The run's own split (a :class:`coaudio.data.split_plan.Split`), its files looked up
        under the dataset folder ``root``; None for a run that recorded no split. Resuming
        with it trains on exactly the files the run started with."""
        from coaudio.data.split_plan import Split, SplitError, SplitMethod

        if "split" not in self.config:
            return None
        splits, missing = {}, []
        for name in self.splits:
            files = self.split_files(name, root)
            splits[name] = files.found
            missing += files.missing
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise SplitError(
                f"{len(missing)} file(s) of the split of {self.path} are not under {root} ({shown}): a "
                "resumed run trains on exactly its files; restore them, or start over with --force"
            )
        method = SplitMethod.from_dict(self.config["split"])
        return Split(
            splits, method, [f"resuming with the run's own split ({sum(map(len, splits.values()))} files)"]
        )

    def data_hint(self) -> str:
        """Where training read its data, for messages."""
        root = self.config.get("data", {}).get("root")
        return (
            f"it was trained on data in {root}"
            if root
            else "it was trained before runs recorded their data folder"
        )


def _suffixes_under(base: Path, recorded: str) -> list[Path]:
    """``base`` joined with ever shorter trailing parts of ``recorded`` (longest first)."""
    parts = Path(recorded).parts
    return [base.joinpath(*parts[i:]) for i in range(len(parts)) if parts[i] not in ("/", "..", ".")]


def missing_data_message(run: RunFolder, split: str, files: SplitFiles, data=None) -> str:
    """One line: which files are missing, where they were looked for, how to point at them."""
    total = len(files.found) + len(files.missing)
    if total == 0:  # nothing is missing: the split itself is empty (a tiny set's random split)
        return (
            f"{run.path} has no {split} files: its split put none there (too few clips?); evaluate "
            "another split with --split, or a labelled folder with --data DIR"
        )
    shown = ", ".join(files.missing[:3]) + (", ..." if len(files.missing) > 3 else "")
    advice = (
        f"--data {data} must be the dataset folder itself (the one given to coaudio train, moved)"
        if data is not None
        else "if the data moved, point evaluate at the dataset folder with --data DIR"
    )
    return (
        f"{len(files.missing)} of the {total} {split} files of {run.path} were not found ({shown}; "
        f"looked in {', '.join(files.searched)}); {run.data_hint()}: {advice}"
    )


@dataclass(frozen=True)
class EvalSource:
    """What ``coaudio evaluate`` works on: a model, its labels and recipe, and labelled tracks."""

    title: str  # says which split (or folder) the numbers come from
    tag: str  # file-name part of the results: test, valid, train or folder
    checkpoint: Path
    recipe: object  # coaudio.train.config.Recipe
    labels: list[str]
    tracks: list[Track]
    missing: list[str]  # recorded files that were not found
    eval_dir: Path
    default_cache: Path
    split: dict = field(default_factory=dict)  # how the files were chosen (SplitMethod.to_dict)


def run_source(run: RunFolder, split: str, data=None) -> tuple[EvalSource, SplitFiles]:
    """A split of a training run (its files looked up as :meth:`RunFolder.split_files` does)."""
    from coaudio.config import ConfigError, from_dict
    from coaudio.train.config import Recipe

    checkpoint = run.best
    if "recipe" not in run.config:
        raise RunError(f"{run.path / CONFIG}: no recipe in it (not written by coaudio train)")
    try:
        recipe = from_dict(Recipe, run.config["recipe"])
    except ConfigError as exc:
        raise RunError(f"{run.path / CONFIG}: {exc}") from None
    files = run.split_files(split, data)
    method = run.split_method
    source = EvalSource(
        f"{run.path} ({split} split: {method['description']}",
        split,
        checkpoint,
        recipe,
        run.labels,
        files.found,
        files.missing,
        run.path / "eval",
        run.default_cache,
        method,
    )
    return source, files


def folder_source(checkpoint: Path, folder: Path) -> EvalSource:
    """Every file of a labelled ``<label>/<files>`` folder, for a checkpoint (not a run folder):
    the folder's labels must be labels the model knows; the recipe comes from the checkpoint
    (its front end and window) with the default evaluation settings."""
    from coaudio.data.split_plan import SplitMethod
    from coaudio.data.tracks import DatasetError, list_labelled
    from coaudio.models.checkpoint import frontend_of, read_metadata
    from coaudio.train.config import DataConfig, ModelShape, Recipe

    try:
        cfg, labels, info = read_metadata(checkpoint)
        tracks = list_labelled(folder, min_labels=1)
    except (DatasetError, ValueError, FileNotFoundError) as exc:
        raise RunError(str(exc)) from None
    unknown = sorted({t.label for t in tracks} - set(labels))
    if unknown:
        raise RunError(
            f"{folder}: label folders the model does not know: {', '.join(unknown)} "
            f"(it knows {', '.join(labels)})"
        )
    frontend = frontend_of(checkpoint, info)
    shape = ModelShape(token_dim=cfg.token_dim, embedder_width=cfg.embedder_width, encoder=cfg.encoder)
    recipe = Recipe(data=DataConfig(frontend=frontend), model=shape)
    method = SplitMethod("folder", folder=str(folder)).to_dict()
    return EvalSource(
        f"{checkpoint} (split: {method['description']}",
        "folder",
        checkpoint,
        recipe,
        labels,
        tracks,
        [],
        checkpoint.parent / "eval",
        checkpoint.parent / ".coaudio-cache",
        method,
    )
