"""Training runs end to end, for the command line and for Python callers alike.

:func:`train_run` takes a recipe and labelled tracks per split and leaves a complete run folder
(or continues one): it settles the recipe (absolute weight files, a concrete thread count),
refuses to start over in a folder that holds a run, checks a resume against the run's settings,
refuses splits too small to train or select on, extracts features through the cache (rank 0
first under torchrun) and trains. Problems a user can fix raise :class:`RunError` with a
message that says what to do; progress and notes go to the callbacks (the CLI prints them, a
Python caller gets log lines and tqdm bars).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from coaudio import distributed
from coaudio.config import ConfigError
from coaudio.data.split_plan import Split, SplitError, SplitMethod, SplitOptions, plan_split
from coaudio.threads import batch_threads, local_processes
from coaudio.train.run import RunError, RunFolder

log = logging.getLogger(__name__)

RUN_FILES = (
    "config.json",
    "best.safetensors",
    "last.safetensors",
    "metrics.jsonl",
    "metrics.csv",
    "curves.png",
    "distributed.json",
    "eval",
)  # what --force removes, and nothing else
HOLDS_RUN = ("best.safetensors", "last.safetensors")  # a run with at least one finished epoch


@dataclass
class TrainResult:
    recipe: object  # the settled coaudio.train.config.Recipe
    labels: list[str]
    splits: dict  # name -> list of Clip (empty when nothing was trained)
    rank: int
    trained: bool  # False: a resumed run had finished all its epochs already


@dataclass
class Callbacks:
    """How a run reports: ``note`` for one-line messages, ``extracting`` a context around
    feature extraction (a spinner), ``on_epoch``/``on_batch`` as for :func:`coaudio.train.loop.train`."""

    note: Callable[[str], None] = log.info
    extracting: Callable[[], AbstractContextManager] = nullcontext
    on_epoch: Callable | None = None
    on_batch: Callable | None = None


def check_out(out: Path, resume: bool, force: bool) -> None:
    """Never start over silently in a folder that holds a run."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    if (out / "folds.json").is_file():  # its folds are runs of their own: never mix one in
        raise RunError(
            f"{out} holds a cross-validation (folds.json): continue it with --resume, or train a single "
            "run in another --out"
        )
    if any((out / name).exists() for name in HOLDS_RUN) and not resume and not force:
        raise RunError(
            f"{out} already holds a training run; add --resume to continue it, or --force to "
            "start over and replace it"
        )


def settle(recipe, out: Path, resume: bool):
    """The recipe as the run records it: pretrained weights by model name or absolute file path
    with their SHA-256 (config.json and the checkpoints then work from any directory, and name
    the exact weights; :func:`coaudio.pretrained.frontends.record_frontend`) and a concrete
    thread count: the one asked for, else on resume the run's own (so the arithmetic, and the
    resumed weights, stay the same), else chosen now from the idle cores."""
    from coaudio.features.cache import check_weights
    from coaudio.pretrained.frontends import record_frontend, resolve_frontend

    try:
        frontend = record_frontend(recipe.frontend)
        check_weights(resolve_frontend(frontend).cache_config())
    except (FileNotFoundError, ValueError) as exc:  # a model not fetched, or not its weights
        raise RunError(str(exc)) from None
    data = replace(recipe.data, frontend=frontend)
    threads = recipe.train.threads
    if not threads and resume and (out / "config.json").is_file():
        threads = json.loads((out / "config.json").read_text())["recipe"]["train"].get("threads", 0)
    chosen = batch_threads(threads, local_processes())
    return replace(recipe, data=data, train=replace(recipe.train, threads=chosen))


def folder_split(
    root: Path, options: SplitOptions, seed: int, out: Path | None = None, resume: bool = False
) -> Split:
    """The split to train the labelled folder ``root`` with: when resuming a run that recorded
    its split, exactly that one (options that ask for another are refused, naming the
    difference); else the one ``options`` choose (see :func:`coaudio.data.split_plan.plan_split`)."""
    config = out / "config.json" if out is not None else None
    if resume and config is not None and config.is_file():
        recorded = RunFolder(out).recorded_split(root)
        if recorded is not None:
            asked = options.asked()
            difference = asked and recorded.method.differs_from(asked)
            if difference:
                raise SplitError(
                    f"{out}: {difference}; resume without split options (the run keeps its own) or "
                    "with the same ones, or use a new --out"
                )
            return recorded
    return plan_split(root, options, seed)


def train_run(
    recipe,
    track_splits: dict | Split,
    out: Path,
    data_root: Path,
    resume: bool = False,
    force: bool = False,
    cache: Path | None = None,
    jobs: int = 2,
    callbacks: Callbacks | None = None,
) -> TrainResult:
    """Train (or continue) the run in ``out`` on ``track_splits``: a :class:`Split` (its method
    is recorded in config.json and reported) or a plain dict name -> list of Track."""
    from coaudio.train.loop import train
    from coaudio.train.selection import early_stop_reason, stale_epochs

    calls = callbacks or Callbacks()
    plan = track_splits if isinstance(track_splits, Split) else Split(track_splits, SplitMethod("given"))
    track_splits = plan.splits
    check_out(out, resume, force)
    rank = distributed.join()
    labels = sorted({t.label for tracks in track_splits.values() for t in tracks})
    recipe = settle(recipe, out, resume)
    if _already_finished(recipe, labels, out, resume, calls.note):
        return TrainResult(recipe, labels, {}, rank, trained=False)
    _check_split_sizes({name: len(tracks) for name, tracks in track_splits.items()})
    for line in (plan.headline, *plan.notes):  # after the checks: an error stays the only line
        calls.note(line)
    if force and rank == 0:
        clear_run(out)
    splits = _load_splits(
        recipe, track_splits, labels, cache or out.parent / ".coaudio-cache", jobs, rank, calls
    )
    _check_split_sizes({name: len(clips) for name, clips in splits.items()})
    calls.note(
        "clips: "
        + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        + f"; {recipe.train.threads} torch thread(s)"
    )
    try:
        history = train(
            recipe,
            splits,
            labels,
            out,
            resume=resume,
            on_epoch=calls.on_epoch,
            on_batch=calls.on_batch,
            data_root=data_root,
            split=plan.method.to_dict(),
        )
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    select = recipe.train.select
    if len(history) < recipe.train.epochs and stale_epochs(history, select) >= recipe.train.patience > 0:
        calls.note(f"stopped early after epoch {len(history)}: {early_stop_reason(history, select)}")
    distributed.leave()  # not on errors: a failed rank must not wait at a barrier for the others
    return TrainResult(recipe, labels, splits, rank, trained=True)


def _already_finished(recipe, labels: list[str], out: Path, resume: bool, note) -> bool:
    """--resume: refuse other settings before any work, and say what was found."""
    from coaudio.train.loop import check_resumable
    from coaudio.train.selection import stopped_early

    if not resume:
        return False
    if not (out / "last.safetensors").exists():
        note(f"nothing to resume in {out} (no finished epoch): starting a new run")
        return False
    try:
        finished = check_resumable(out, recipe, labels)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    early = stopped_early(out, recipe.train.patience, recipe.train.select)
    if early is not None:
        note(
            f"{out}: nothing to train with train.patience = {recipe.train.patience} after epoch "
            f"{finished} ({early}); to train on, resume with a larger --set train.patience=N, or 0 "
            "for no early stopping"
        )
        return True
    if finished >= recipe.train.epochs:
        note(
            f"{out} has already finished {finished} epoch(s) (train.epochs = {recipe.train.epochs}): "
            "nothing to train; to train longer, resume with --set train.epochs=N"
        )
        return True
    note(f"resuming {out} after epoch {finished} of {recipe.train.epochs}")
    return False


def _check_split_sizes(sizes: dict[str, int]) -> None:
    """Training needs clips to learn from and validation clips to choose the best epoch."""
    for name in ("train", "valid"):
        if not sizes.get(name):
            shown = ", ".join(f"{k} {v}" for k, v in sizes.items())
            raise RunError(
                f"the {name} split has no clips ({shown} of {sum(sizes.values())}): the best "
                "checkpoint is chosen on validation clips; use more clips per label (at least about 10)"
            )


def clear_run(out: Path) -> None:
    """--force: remove the files of the previous run (only those; the folder may hold others)."""
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _load_splits(
    recipe, track_splits: dict, labels: list[str], cache: Path, jobs: int, rank: int, calls: Callbacks
) -> dict:
    from coaudio.pretrained.frontends import resolve_frontend
    from coaudio.train.data import load_clips

    splits, frontend = {}, resolve_frontend(recipe.frontend)
    own_bar = calls.extracting is nullcontext  # a Python caller: the library draws its own bar
    with calls.extracting():
        distributed.barrier(skip=rank == 0)  # rank 0 fills the feature cache; the others then read it
        for name, tracks in track_splits.items():
            splits[name], problems = load_clips(tracks, labels, cache, frontend, jobs, bar=own_bar)
            for problem in problems:
                calls.note(f"skipped {problem}")
        distributed.barrier(skip=rank != 0)
    return splits


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class Evaluation:
    """One evaluation: where it came from, the batch report and its JSON document, and the
    hop-by-hop report when streaming was asked for."""

    source: object  # coaudio.train.run.EvalSource
    report: object  # coaudio.train.evaluate.BatchReport
    model: object
    clips: list
    document: dict
    stream: object = None  # coaudio.online.evaluation.StreamingReport


def evaluation_source(run: Path, split: str = "test", data: Path | None = None, note=log.warning):
    """A run folder's split (its files found again; missing ones reported through ``note``) or,
    for a checkpoint file, the labelled folder ``data``."""
    from coaudio.train.run import RunFolder, folder_source, missing_data_message, run_source

    run = Path(run)
    if data is not None and not Path(data).is_dir():
        raise RunError(f"--data {data}: no such folder")
    if (run / "folds.json").is_file() and not (run / "config.json").is_file():
        raise RunError(
            f"{run} holds a cross-validation (folds.json): evaluate one of its folds, e.g. {run / 'fold-1'}"
        )
    if run.is_file():
        if data is None:
            raise RunError(
                f"{run} is a file: give a run folder, or a checkpoint with the labelled folder to "
                "evaluate it on (--data DIR)"
            )
        return folder_source(run, Path(data))
    folder = RunFolder(run)
    source, files = run_source(folder, split, data)
    if not files.found:
        raise RunError(missing_data_message(folder, split, files, data))
    if files.missing:
        note(
            f"warning: {missing_data_message(folder, split, files, data)}; evaluating the "
            f"{len(files.found)} that were found"
        )
    return source


def evaluate_batch(source, cache: Path | None = None, note=log.warning) -> Evaluation:
    """Clip metrics of ``source``'s model on its tracks (features through the cache)."""
    from coaudio.models.checkpoint import load_checkpoint
    from coaudio.pretrained.frontends import resolve_frontend
    from coaudio.threads import set_threads
    from coaudio.train.data import load_clips
    from coaudio.train.evaluate import batch_report

    try:
        model, _, info = load_checkpoint(source.checkpoint)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise RunError(str(exc)) from None
    set_threads(batch_threads())
    try:
        frontend = resolve_frontend(source.recipe.frontend)
    except (ConfigError, FileNotFoundError) as exc:  # e.g. its model not fetched: what to run
        raise RunError(str(exc)) from None
    clips, problems = load_clips(
        source.tracks, source.labels, cache or source.default_cache, frontend, bar=False
    )
    for problem in problems:
        note(f"skipped {problem}")
    if not clips:
        raise RunError(
            f"none of the {len(source.tracks)} files could be read (see the messages above); "
            f"nothing was evaluated and {source.eval_dir} was left as it was"
        )
    report = batch_report(model, clips, source.recipe, source.labels)
    document = {
        "split": source.tag,
        "split_method": source.split,
        "evaluated": source.title + ")",
        "checkpoint_epoch": info.get("epoch"),
        "clips": len(clips),
        "missing": source.missing,
        "unreadable": problems,
        "accuracy": report.accuracy,
        "per_class": report.per_class,
        "confusion": report.confusion,
    }
    return Evaluation(source, report, model, clips, document)


def evaluate_streaming(evaluation: Evaluation, compare_clips: int = 3):
    """Every clip hop by hop through the per-hop engine; kept in ``evaluation.stream``."""
    from coaudio.features.fixed import token_function
    from coaudio.online.evaluation import streaming_report
    from coaudio.pretrained.frontends import resolve_frontend

    frontend, clips = evaluation.source.recipe.frontend, evaluation.clips
    embed = token_function(resolve_frontend(frontend))
    evaluation.stream = streaming_report(
        evaluation.model, [c.path for c in clips], [c.label for c in clips], frontend, compare_clips, embed
    )
    return evaluation.stream


def write_evaluation(evaluation: Evaluation) -> Path:
    """Everything at the end, each file atomically, so a failed evaluation never replaces
    results; an earlier streaming curve that no longer matches is removed. Returns the folder."""
    from coaudio.safeio import write_text_atomically
    from coaudio.train.plots import save_confusion_png, save_curve

    folder, tag, document = evaluation.source.eval_dir, evaluation.source.tag, evaluation.document
    try:
        folder.mkdir(exist_ok=True)
        save_confusion_png(evaluation.report, evaluation.source.labels, folder / f"confusion-{tag}.png")
        if evaluation.stream is not None:
            save_curve(evaluation.stream, folder / f"per-hop-{tag}.png", folder / f"per-hop-{tag}.csv")
            document["streaming"] = evaluation.stream.__dict__
        else:
            for suffix in ("png", "csv"):
                (folder / f"per-hop-{tag}.{suffix}").unlink(missing_ok=True)
        write_text_atomically(folder / f"metrics-{tag}.json", json.dumps(document, indent=1) + "\n")
    except OSError as exc:
        raise RunError(f"cannot write the results to {folder}: {exc.strerror or exc}") from None
    return folder


def evaluate_run(
    run: Path,
    split: str = "test",
    data: Path | None = None,
    streaming: bool = False,
    compare_clips: int = 3,
    cache: Path | None = None,
    note=log.warning,
) -> Evaluation:
    """Evaluate a run folder's split (or a checkpoint on a labelled folder) and write eval/."""
    evaluation = evaluate_batch(evaluation_source(run, split, data, note), cache, note)
    if streaming:
        evaluate_streaming(evaluation, compare_clips)
    write_evaluation(evaluation)
    return evaluation
