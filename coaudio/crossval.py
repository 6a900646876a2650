"""K-fold cross-validation of a labelled folder: K ordinary runs and one summary.

``OUT/fold-1`` .. ``OUT/fold-K`` are normal run folders (``coaudio evaluate`` takes each one);
fold k tests on part k of :class:`coaudio.data.kfold.Folds`. ``OUT/folds.json`` is written
first with the folds themselves (the files of each part), so that a resumed cross-validation
re-reads exactly those, and again after every fold with its test accuracy; at the end it holds
their mean and standard deviation (null over fewer than two folds). Every write is atomic.

Resuming continues each fold as a single run resumes (:func:`coaudio.runs.train_run`): finished
folds train nothing, and their test results are read back from their ``eval/`` when newer than
their best checkpoint. A resume never loses what ``folds.json`` holds: it is rewritten only
when a fold's result differs from the recorded one, and keeps the recorded results of the
folds not reached yet, so a refused, failed or interrupted resume leaves it as it was.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coaudio.data.kfold import Folds, plan_folds
from coaudio.data.split_plan import SplitError, SplitMethod, SplitOptions, check_out_outside
from coaudio.runs import HOLDS_RUN, Callbacks, clear_run, evaluate_run, train_run
from coaudio.safeio import write_text_atomically
from coaudio.train.run import RunError, RunFolder

log = logging.getLogger(__name__)

FOLDS_FILE = "folds.json"


def fold_dir(out: Path, fold: int) -> Path:
    return Path(out) / f"fold-{fold}"


def is_cross_validation(out: Path) -> bool:
    return (Path(out) / FOLDS_FILE).is_file()


@dataclass
class FoldResult:
    fold: int
    run: Path
    trained: bool  # False: the fold had finished before (a resume)
    sizes: dict[str, int]  # clips per split, as the fold's config.json records them
    document: dict  # the fold's eval/metrics-test.json
    evaluation: object = None  # coaudio.runs.Evaluation, None when read back from eval/

    @property
    def accuracy(self) -> float:
        return self.document["accuracy"]


@dataclass
class CrossValidation:
    folds: Folds
    results: list[FoldResult]

    @property
    def accuracies(self) -> list[float]:
        return [r.accuracy for r in self.results]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies) if self.results else float("nan")

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1) of the folds' test accuracies; None (undefined)
        over fewer than two folds."""
        return _std(self.accuracies)


def _std(accuracies: list[float]) -> float | None:
    return statistics.stdev(accuracies) if len(accuracies) > 1 else None


@dataclass
class FoldCallbacks:
    """``start(k, K)`` before fold k trains; ``done(result)`` after its test split is evaluated."""

    start: Callable[[int, int], None] = lambda fold, count: log.info("fold %d of %d", fold, count)
    done: Callable[[FoldResult], None] = lambda result: log.info(
        "fold %d: test accuracy %.3f", result.fold, result.accuracy
    )


def check_folds_out(out: Path, resume: bool, force: bool) -> None:
    """Never start a cross-validation over a run, nor over another one silently."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    if any((out / name).exists() for name in HOLDS_RUN):
        raise RunError(f"{out} holds a single training run, not a cross-validation: use another --out")
    folds = [p for p in out.glob("fold-*") if any((p / name).exists() for name in HOLDS_RUN)]
    if (is_cross_validation(out) or folds) and not resume and not force:
        raise RunError(
            f"{out} already holds a cross-validation; add --resume to continue it, or --force to start "
            "over and replace it"
        )


def plan_cross_validation(root: Path, options: SplitOptions, seed: int, out: Path, resume: bool) -> Folds:
    """The folds: when resuming, exactly those ``folds.json`` recorded (options that ask for
    others are refused, naming the difference); else made from ``options``. An ``out`` inside
    ``root`` is refused: its runs would become a label of the dataset."""
    check_out_outside(root, out)
    if not (resume and is_cross_validation(out)):
        return plan_folds(root, options, seed)
    try:
        record = json.loads((Path(out) / FOLDS_FILE).read_text())
        recorded = SplitMethod.from_dict(record["split"])
        assignment = record["assignment"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{out / FOLDS_FILE}: unreadable ({exc.__class__.__name__}: {exc})") from None
    asked = options.asked()
    difference = asked and recorded.differs_from(asked)
    if difference:
        raise SplitError(
            f"{out}: {difference}; resume without split options (the folds stay as they were) or with "
            "the same ones, or use a new --out"
        )
    return Folds.from_assignment(Path(root), assignment, recorded.regex, recorded.seed)


def run_cross_validation(
    recipe,
    folds: Folds,
    out: Path,
    resume: bool = False,
    force: bool = False,
    cache: Path | None = None,
    jobs: int = 2,
    callbacks: Callbacks | None = None,
    fold_callbacks: FoldCallbacks | None = None,
) -> CrossValidation:
    """Train every fold in ``out/fold-k`` (or continue them), evaluate each one's test split
    and keep ``out/folds.json`` up to date."""
    calls, on_fold = callbacks or Callbacks(), fold_callbacks or FoldCallbacks()
    out = Path(out)
    if force:
        _clear_stale_folds(out, folds.count)
    done = CrossValidation(folds, [])
    # a resume keeps the recorded results until their folds are done again
    earlier = _recorded_results(out) if resume and not force else {}
    if not (resume and is_cross_validation(out)):
        _write_record(out, done)  # first: a resume must find the folds even if fold 1 never ends
    for fold in range(1, folds.count + 1):
        on_fold.start(fold, folds.count)
        run = fold_dir(out, fold)
        trained = train_run(recipe, folds.split(fold), run, folds.root, resume, force, cache, jobs, calls)
        if trained.rank != 0:  # under torchrun, rank 0 evaluates and reports
            continue
        done.results.append(_fold_result(fold, run, trained.trained, cache, calls.note))
        _write_record(out, done, earlier)
        on_fold.done(done.results[-1])
    return done


def _fold_result(fold: int, run: Path, trained: bool, cache: Path | None, note) -> FoldResult:
    """The fold's test results: read back when eval/ is newer than its best checkpoint (a
    finished fold on resume), else evaluated now (which writes eval/)."""
    sizes = {name: len(ids) for name, ids in RunFolder(run).config["splits"].items()}
    saved = run / "eval" / "metrics-test.json"
    best = run / "best.safetensors"
    if not trained and saved.is_file() and saved.stat().st_mtime_ns >= best.stat().st_mtime_ns:
        document = json.loads(saved.read_text())
        if "split_method" in document:
            return FoldResult(fold, run, False, sizes, document)
    evaluation = evaluate_run(run, "test", cache=cache, note=note)
    return FoldResult(fold, run, trained, sizes, evaluation.document, evaluation)


def _recorded_results(out: Path) -> dict[int, dict]:
    """The results ``folds.json`` holds, by fold ({} when there is none or it is unreadable)."""
    try:
        results = json.loads((Path(out) / FOLDS_FILE).read_text())["results"]
        return {int(r["fold"]): r for r in results if isinstance(r.get("test_accuracy"), (int, float))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_record(out: Path, done: CrossValidation, earlier: dict[int, dict] | None = None) -> None:
    """``folds.json``: the folds, this run's results and, for folds it has not reached, the
    ``earlier`` recorded ones. Written atomically, and only when its contents change."""
    folds = done.folds
    results = {
        r.fold: {
            "fold": r.fold,
            "run": r.run.name,
            "split": r.document.get("split_method"),
            "clips": r.sizes,
            "checkpoint_epoch": r.document.get("checkpoint_epoch"),
            "test_accuracy": r.accuracy,
        }
        for r in done.results
    }
    for fold, entry in (earlier or {}).items():
        if 1 <= fold <= folds.count:
            results.setdefault(fold, entry)
    entries = [results[fold] for fold in sorted(results)]
    accuracies = [entry["test_accuracy"] for entry in entries]
    document = {
        "folds": folds.count,
        "split": folds.method().to_dict(),
        "data_root": str(folds.root.absolute()),
        "assignment": folds.assignment(),
        "results": entries,
        "test_accuracy": {
            "mean": statistics.fmean(accuracies),
            "std": _std(accuracies),
            "folds": len(entries),
        }
        if entries
        else None,
    }
    text = json.dumps(document, indent=1) + "\n"
    path = out / FOLDS_FILE
    try:
        if path.read_text() == text:
            return  # nothing changed (a resume that read a finished fold back)
    except OSError:
        pass
    write_text_atomically(path, text)


def _clear_stale_folds(out: Path, count: int) -> None:
    """--force: the run files of folds beyond this cross-validation's count (an earlier one
    had more), so that OUT holds one cross-validation only."""
    for folder in out.glob("fold-*"):
        suffix = folder.name.removeprefix("fold-")
        if folder.is_dir() and suffix.isdigit() and int(suffix) > count:
            clear_run(folder)
