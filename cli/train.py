"""``coaudio train``: train a continual classifier on a labelled folder tree or on GTZAN."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail, interrupted, resume_command

app = typer.Typer(help="Train a continual transformer classifier.", no_args_is_help=True)

# Options shared by both commands.
Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, metrics, config).")]
# A str, not a Path checked by Typer: it may also name a shipped recipe (see _recipe).
RecipeFile = Annotated[
    Optional[str],
    typer.Option(
        "--recipe",
        metavar="NAME|FILE",
        help="Recipe TOML file, or a shipped recipe's name (synth, gtzan, gtzan-melstats; see "
        "coaudio recipes); default: built-in defaults.",
    ),
]
Overrides = Annotated[
    list[str],
    typer.Option("--set", help="Override a recipe setting, e.g. --set train.epochs=10 (repeatable)."),
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out after an interruption.")]
Cache = Annotated[
    Optional[Path], typer.Option("--cache", help="Feature cache (default: <out>/../.coaudio-cache).")
]
Jobs = Annotated[int, typer.Option("--jobs", min=1, help="Feature extraction processes.")]
Force = Annotated[
    bool, typer.Option("--force", help="Start over in an --out folder that holds a run, replacing it.")
]
Threads = Annotated[
    int,
    typer.Option(
        "--threads",
        min=0,
        help="torch threads (0: the idle cores, divided among torchrun's local processes).",
    ),
]


SplitsFile = Annotated[
    Optional[Path],
    typer.Option(
        "--splits",
        metavar="FILE",
        help="CSV with the header path,split (train, valid or test): each file's split. Paths relative "
        "to ROOT (or the CSV's folder) or absolute; files it does not list are left out.",
    ),
]
Group = Annotated[
    Optional[str],
    typer.Option(
        "--group",
        metavar="REGEX",
        help="The first capture group, searched in each file's path relative to ROOT, names its "
        "recording: recordings are split 80/10/10 (stratified by label, seeded), never their clips.",
    ),
]
FoldCount = Annotated[
    Optional[int],
    typer.Option(
        "--folds",
        metavar="K",
        help="K-fold cross-validation (K >= 2) by recording (--group) or by file: runs in "
        "OUT/fold-1..K, then each fold's test accuracy, their mean and standard deviation (OUT/folds.json).",
    ),
]


@app.command("folder")
def folder_cli(
    root: Annotated[
        Path, typer.Argument(help="Folder of <label>/<audio files> (e.g. from coaudio data synth).")
    ],
    out: Out,
    recipe: RecipeFile = None,
    set_: Overrides = (),  # Typer gives a list; the default is never mutated
    resume: Resume = False,
    cache: Cache = None,
    jobs: Jobs = 2,
    force: Force = False,
    threads: Threads = 0,
    splits: SplitsFile = None,
    group: Group = None,
    folds: FoldCount = None,
) -> None:
    """Train on any labelled folder tree. The split: --splits FILE, else ROOT/train|valid|test/
    folders, else --group REGEX; without any, a seeded random 80/10/10 by file (which lets
    clips of one recording straddle train and test). --folds K cross-validates."""
    from coaudio.crossval import is_cross_validation
    from coaudio.data.split_plan import SplitOptions, SplitUsageError, check_options
    from coaudio_cli.cache_option import check_cache_option

    check_cache_option(cache)  # before any work: one error line, not one per clip
    options = SplitOptions(splits, group, folds)
    try:
        check_options(options, root, out)
    except SplitUsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    run_options = RunOptions(root, resume, force, cache, jobs)
    if folds is not None or (resume and is_cross_validation(out)):
        from coaudio_cli.train_folds import cross_validate

        cross_validate(out, options, lambda resuming: _recipe(recipe, set_, threads, resuming), run_options)
        return
    _check_out(out, resume, force)
    cfg = _recipe(recipe, set_, threads, out if resume else None)
    _run(cfg, _folder_split(root, options, cfg.train.seed, out, resume), out, run_options)


def _folder_split(root: Path, options, seed: int, out: Path, resume: bool):
    """coaudio.runs.folder_split, any problem a one-line error."""
    from coaudio.data.tracks import DatasetError
    from coaudio.runs import folder_split
    from coaudio.train.run import RunError

    try:
        return folder_split(root, options, seed, out, resume)
    except (DatasetError, RunError) as exc:
        fail(exc)


@app.command("gtzan")
def gtzan_cli(
    root: Annotated[Path, typer.Argument(help="GTZAN folder (either layout).")],
    out: Out,
    recipe: RecipeFile = None,
    set_: Overrides = (),  # Typer gives a list; the default is never mutated
    resume: Resume = False,
    cache: Cache = None,
    jobs: Jobs = 2,
    force: Force = False,
    threads: Threads = 0,
) -> None:
    """Train on GTZAN; data.split = filtered (fault-filtered 443/197/290) or random."""
    from coaudio.data.gtzan import GTZANError, list_tracks
    from coaudio.data.split_plan import gtzan_split
    from coaudio_cli.cache_option import check_cache_option

    check_cache_option(cache)  # before any work: one error line, not one per clip
    _check_out(out, resume, force)
    try:
        tracks = list_tracks(root)
    except GTZANError as exc:
        fail(exc)
    cfg = _recipe(recipe, set_, threads, out if resume else None)
    _run(
        cfg,
        gtzan_split(tracks, cfg.data.split, cfg.train.seed),
        out,
        RunOptions(root, resume, force, cache, jobs),
    )


def _recipe(spec: Optional[str], overrides: list[str], threads: int = 0, resuming: Optional[Path] = None):
    """The recipe to train with: ``spec`` is a file path (which wins) or a shipped recipe's
    name; None means the built-in defaults, or, when ``resuming`` a run, the run's own recipe.
    Any problem is a one-line error (exit 1)."""
    from coaudio import recipes
    from coaudio.config import (
        ConfigError,
        from_dict,
        load,
        merge,
        parse_overrides,
        to_dict,
    )
    from coaudio.train.config import Recipe

    try:
        if spec is None:
            base = to_dict(Recipe())
            if resuming is not None and (resuming / "config.json").is_file():
                import json

                base = json.loads((resuming / "config.json").read_text())["recipe"]
            recipe = from_dict(Recipe, merge(base, parse_overrides(overrides)))
        else:
            with recipes.locate(spec) as path:
                recipe = load(Recipe, path, overrides)
    except ConfigError as exc:
        fail(exc)
    if threads:
        from dataclasses import replace

        recipe = replace(recipe, train=replace(recipe.train, threads=threads))
    return recipe


def _check_out(out: Path, resume: bool, force: bool) -> None:
    """Before any work: the options agree, and a used --out is not started over silently."""
    from coaudio.runs import check_out
    from coaudio.train.run import RunError

    if resume and force:
        raise typer.BadParameter("--resume continues the run in --out and --force replaces it: give one")
    try:
        check_out(out, resume, force)
    except RunError as exc:
        fail(exc)


@dataclass(frozen=True)
class RunOptions:
    data_root: Path
    resume: bool
    force: bool
    cache: Optional[Path]
    jobs: int


class Reporter:
    """Progress of one training run on stderr: the extraction spinner, a bar per epoch, a line
    per finished epoch, notes; ``finished`` says how far it got (for the Ctrl-C message)."""

    def __init__(self) -> None:
        self.err = err_console(quiet=int(os.environ.get("RANK", "0")) != 0)  # torchrun: rank 0 reports
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            console=self.err,
            disable=not self.err.is_terminal,
            transient=True,  # the epoch lines stay; the bar goes when training ends
        )
        self.task = self.progress.add_task("batches", total=None, epoch=1, rate="")
        self.finished = {"epoch": 0, "stage": "extracting"}
        self.epoch_started, self.windows, self.trained_s = 0.0, 0, 0.0  # this epoch's clock and rate

    def restart(self) -> None:
        """A new run (the next fold): its epochs count from 1 again."""
        self.stop()
        self.finished.update(epoch=0, stage="extracting")
        self.progress.update(self.task, epoch=1, completed=0, total=None, rate="")

    def stop(self) -> None:
        """Take the bar off the screen (before a result, an error or the Ctrl-C message)."""
        self.progress.stop()

    def on_epoch(self, report) -> None:
        self.finished["epoch"] = report.epoch
        self.progress.update(self.task, epoch=report.epoch + 1, completed=0, rate="")
        seconds = time.perf_counter() - self.epoch_started
        rate = f", {self.windows / self.trained_s:.0f} windows/s" if self.trained_s > 0 else ""
        self.err.print(
            f"epoch {report.epoch}: loss {report.loss:.4f}, train {report.train_accuracy:.3f}, "
            f"valid {report.valid_accuracy:.3f} ({seconds:.1f} s{rate})",
            highlight=False,
        )

    def on_batch(self, done: int, total: int, windows: int) -> None:
        """Called with done = 0 before an epoch's first batch, then after every batch."""
        now = time.perf_counter()
        if self.finished["stage"] != "training":  # started here, after the extraction spinner ended
            self.finished["stage"] = "training"
            self.progress.start()
        if done == 0:  # the epoch's clock starts: training, then validation until on_epoch
            self.epoch_started, self.windows, self.trained_s = now, 0, 0.0
        else:
            self.windows, self.trained_s = windows, now - self.epoch_started
        rate = f"{self.windows / self.trained_s:.0f} windows/s" if self.trained_s > 0 else ""
        self.progress.update(self.task, completed=done, total=total, rate=rate)

    def note(self, text: str) -> None:
        self.err.print(text, highlight=False, markup=False)

    def callbacks(self):
        from coaudio.runs import Callbacks

        return Callbacks(
            self.note, lambda: self.err.status("extracting features"), self.on_epoch, self.on_batch
        )


def _run(cfg, track_splits, out: Path, options: RunOptions) -> None:
    """coaudio.runs.train_run with rich progress, one-line errors and the resume command on Ctrl-C."""
    from coaudio.features.cache import CacheError
    from coaudio.runs import train_run
    from coaudio.train.run import RunError

    reporter = Reporter()
    try:
        result = train_run(
            cfg,
            track_splits,
            out,
            options.data_root,
            options.resume,
            options.force,
            options.cache,
            options.jobs,
            reporter.callbacks(),
        )
    except (RunError, CacheError) as exc:  # CacheError: the default cache cannot be made
        reporter.stop()
        fail(exc)
    except KeyboardInterrupt:
        reporter.stop()  # first: the message must not land on (or under) a live bar
        _interrupted(out, reporter.finished)
    reporter.stop()
    if result.trained and result.rank == 0:
        _final_table(result.recipe, result.splits, out)


def _interrupted(out: Path, finished: dict) -> None:
    if finished["stage"] == "extracting" and not (out / "last.safetensors").exists():
        interrupted(
            "interrupted while extracting features; what was extracted is cached, so running the "
            "same command again continues from there"
        )
    if not (out / "last.safetensors").exists():
        interrupted(
            "interrupted before the first epoch ended; nothing was saved, so running the same "
            "command again starts over"
        )
    from coaudio.train.loop import finished_epochs

    # what last.safetensors holds, not the last epoch line: the Ctrl-C may land between the save
    # of an epoch and its line
    saved = finished_epochs(out) or finished["epoch"]
    done = f"after epoch {saved}" if saved else "before the next epoch ended"
    interrupted(
        f"interrupted {done}; {out} keeps every finished epoch. Resume with:\n"
        f"  {resume_command(drop=('--force',))}"
    )


def _final_table(cfg, splits: dict, out: Path) -> None:
    from coaudio.models.checkpoint import load_checkpoint
    from coaudio.train.loop import accuracy

    model, _, info = load_checkpoint(out / "best.safetensors")
    out_console().print(
        f"{out}: best checkpoint (epoch {info['epoch']})", highlight=False, markup=False, soft_wrap=True
    )
    table = Table()  # the heading above is its own line: a title would wrap mid-path
    for column in ("split", "clips", "clip accuracy"):
        table.add_column(column, justify="right")
    for name in ("train", "valid", "test"):
        if splits.get(name):
            table.add_row(name, str(len(splits[name])), f"{accuracy(model, splits[name], cfg):.3f}")
    out_console().print(table)
