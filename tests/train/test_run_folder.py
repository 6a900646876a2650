"""A run is usable from any directory, its data can move, and no command loses work silently."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from coaudio.data.synth import SynthConfig, write_dataset
from coaudio.train.run import RunFolder
from tests.train.test_train import BASE


def _coaudio(*args, cwd, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "coaudio", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def _train(project, out: str, *options):
    """`coaudio train folder data --out OUT` in the project folder, with relative paths."""
    return _coaudio("train", "folder", "data", "--out", out, *options, cwd=project)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder with its data, and a run trained there with *relative* paths, as a
    user following the README does."""
    root = tmp_path_factory.mktemp("project")
    write_dataset(root / "data", SynthConfig(per_genre=6, seconds=3.0, seed=3))
    done = _coaudio("train", "folder", "data", "--out", "runs/a", "--set", "train.epochs=1", *BASE, cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def test_evaluate_from_another_directory_and_after_the_data_moved(project, tmp_path):
    run = project / "runs" / "a"
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["root"] == str(project / "data") and config["data"]["root_from_run"] == "../../data"
    assert all(p.startswith(str(project)) for p in config["paths"]["test"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _coaudio("evaluate", run, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "eval" / "metrics-test.json").read_text())
    assert metrics["clips"] == len(config["paths"]["test"]) > 0 and metrics["missing"] == []
    assert "(test split" in " ".join(done.stdout.split())
    before = (run / "eval" / "metrics-test.json").read_bytes()

    moved = tmp_path / "moved"
    shutil.move(project / "data", moved)
    try:
        lost = _coaudio("evaluate", run, cwd=elsewhere)
        assert lost.returncode == 1 and "Traceback" not in lost.stderr
        assert (
            lost.stderr.count("\n") == 1 and "--data DIR" in lost.stderr and "were not found" in lost.stderr
        )
        assert (run / "eval" / "metrics-test.json").read_bytes() == before  # nothing replaced
        found = _coaudio("evaluate", run, "--data", moved, cwd=elsewhere)
        assert found.returncode == 0, found.stderr
        again = json.loads((run / "eval" / "metrics-test.json").read_text())
        assert again["accuracy"] == metrics["accuracy"] and again["clips"] == metrics["clips"]
    finally:
        shutil.move(moved, project / "data")


def test_a_run_and_its_data_moved_together_still_match(project, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".coaudio-cache"))
    config = json.loads((copy / "runs" / "a" / "config.json").read_text())
    config["data"]["root"] = "/nonexistent/data"  # as if the original were gone
    (copy / "runs" / "a" / "config.json").write_text(json.dumps(config))
    files = RunFolder(copy / "runs" / "a").split_files("test")
    assert not files.missing and all(str(t.path).startswith(str(copy)) for t in files.found)


def test_runs_from_before_the_data_record_are_found_with_data(project, tmp_path):
    """Old config.json: paths as typed relative to the training directory, nothing else."""
    old = tmp_path / "old"
    shutil.copytree(project / "runs" / "a", old)
    config = json.loads((old / "config.json").read_text())
    config["paths"] = {k: [p.replace(str(project) + "/", "") for p in v] for k, v in config["paths"].items()}
    del config["data"], config["files"]
    (old / "config.json").write_text(json.dumps(config))
    run = RunFolder(old)
    assert len(run.split_files("test").missing) == len(config["paths"]["test"])  # cwd is not the project
    files = run.split_files("test", data=project)
    assert not files.missing and all(t.path.is_file() for t in files.found)


def test_train_refuses_an_existing_run_and_force_replaces_it(project):
    run = project / "runs" / "a"
    stamp = (run / "best.safetensors").stat().st_mtime_ns
    refused = _train(project, "runs/a", "--set", "train.epochs=1", *BASE)
    assert refused.returncode == 1 and "already holds a training run" in refused.stderr
    assert "--resume" in refused.stderr and "--force" in refused.stderr
    assert (run / "best.safetensors").stat().st_mtime_ns == stamp
    (run / "eval").mkdir(exist_ok=True)
    replaced = _train(project, "runs/b", "--set", "train.epochs=1", *BASE)
    assert replaced.returncode == 0
    (project / "runs" / "b" / "eval").mkdir()
    (project / "runs" / "b" / "notes.txt").write_text("mine")
    forced = _train(project, "runs/b", "--set", "train.epochs=1", "--force", *BASE)
    assert forced.returncode == 0, forced.stderr
    assert not (project / "runs" / "b" / "eval").exists()  # the old run's results went with it
    assert (project / "runs" / "b" / "notes.txt").read_text() == "mine"  # nothing else did


def test_ctrl_c_prints_the_command_that_resumes(project):
    args = [
        sys.executable,
        "-m",
        "coaudio",
        "train",
        "folder",
        "data",
        "--out",
        "runs/c",
        "--set",
        "train.epochs=5",
        *BASE,
    ]
    job = subprocess.Popen(args, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = project / "runs" / "c" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130, err
    assert "Traceback" not in err and "interrupted after epoch" in err
    command = err.split("Resume with:")[1].strip().splitlines()[0]
    argv = shlex.split(command)
    assert argv[1:3] == ["-m", "coaudio"] and "--resume" in argv
    resumed = subprocess.run(
        [sys.executable, *argv[1:]], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5]


def test_resume_says_what_it_found_and_names_changed_settings(project):
    fresh = _train(project, "runs/d", "--set", "train.epochs=1", "--resume", *BASE)
    assert fresh.returncode == 0 and "nothing to resume in runs/d" in fresh.stderr
    done = _train(project, "runs/d", "--set", "train.epochs=1", "--resume", *BASE)
    assert done.returncode == 0 and "already finished 1 epoch(s)" in done.stderr
    other = _train(project, "runs/d", "--set", "train.epochs=2", "--resume", "--set", "train.lr=0.1", *BASE)
    assert other.returncode == 1 and "train.lr: run 0.002, now 0.1" in other.stderr
    assert other.stderr.count("\n") == 1
    # without --recipe or --set, --resume continues with the run's own recipe
    longer = _train(project, "runs/d", "--resume", "--set", "train.epochs=2", "--jobs", 1)
    assert longer.returncode == 0, longer.stderr
    assert "resuming runs/d after epoch 1 of 2" in longer.stderr


def test_results_are_readable_by_others_and_stale_curves_go(project):
    import stat

    run = project / "runs" / "a"
    assert _coaudio("evaluate", run, "--streaming", "--compare-clips", 0, cwd=project).returncode == 0
    assert (run / "eval" / "per-hop-test.csv").exists()
    mask = os.umask(0)
    os.umask(mask)
    for name in (
        "config.json",
        "best.safetensors",
        "last.safetensors",
        "metrics.jsonl",
        "eval/metrics-test.json",
    ):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~mask, name
    assert _coaudio("evaluate", run, cwd=project).returncode == 0  # without --streaming
    assert (
        not (run / "eval" / "per-hop-test.csv").exists() and not (run / "eval" / "per-hop-test.png").exists()
    )


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ctrl_c_while_workers_start_shows_no_traceback(project, tmp_path, delay):
    """A terminal's Ctrl-C reaches the whole process group, workers included."""
    job = subprocess.Popen(
        [sys.executable, "-m", "coaudio", "features", "data", "--cache", str(tmp_path / "c"), "--jobs", "2"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(delay)
    os.killpg(job.pid, signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert job.returncode in (0, 130), err  # 0: it had already finished


# `python -m ctrl_c_at MOMENT ARGS`: `python -m coaudio ARGS` with a real Ctrl-C that lands at
# MOMENT: "loading" or "command": as the first code that Python generates from a string (a
# dataclass's __init__, a namedtuple) starts to run while the command line loads, or in the
# command; "shutdown": after the command, once Python has given SIGINT its default action back
# while it tears down its modules. A trace function and a finalizer are only the clock here: the
# signal, the handlers and the exit are the real ones.
_CTRL_C_AT = """
import os, runpy, signal, sys

def ctrl_c_in_generated_code(frame, event, arg):
    if frame.f_code.co_filename == "<string>":
        sys.settrace(None)
        os.kill(os.getpid(), signal.SIGINT)  # raised here, inside that code

class CtrlCAtShutdown:
    def __del__(self, kill=os.kill, pid=os.getpid(), sigint=signal.SIGINT):
        kill(pid, sigint)

moment = sys.argv.pop(1)
import coaudio  # (a Ctrl-C in the package's own import is Python's to report, not ours)
if moment == "command":
    import coaudio_cli.main
if moment == "shutdown":
    sys.modules["coaudio"].ctrl_c_at_shutdown = CtrlCAtShutdown()  # freed with the modules
else:
    sys.settrace(ctrl_c_in_generated_code)
runpy.run_module("coaudio", run_name="__main__", alter_sys=True)
"""


def _coaudio_with_ctrl_c_at(moment: str, *args, cwd, folder):
    (folder / "ctrl_c_at.py").write_text(_CTRL_C_AT)
    return subprocess.run(
        [sys.executable, "-m", "ctrl_c_at", moment, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(folder)},
    )


@pytest.mark.parametrize("moment", ["loading", "command"])
def test_ctrl_c_inside_generated_code_exits_130(project, tmp_path, moment):
    """CPython marks the process as killed by Ctrl-C whenever a KeyboardInterrupt leaves code
    that exec()/eval() ran from a string, even when an outer frame handles it, and a
    ``python -m`` process so marked kills itself with SIGINT on the way out: "interrupted",
    then exit -2 instead of 130 (the flake of the test above)."""
    args = ["train", "folder", "data", "--out", tmp_path / "run", *BASE]
    done = _coaudio_with_ctrl_c_at(moment, *args, cwd=project, folder=tmp_path)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("interrupted")


def test_ctrl_c_while_python_shuts_down_keeps_the_exit_status(project, tmp_path):
    """A Ctrl-C just after the command finished (Python gives SIGINT its default action back
    for the last few hundred ms of its shutdown) killed the process: exit -2 instead of 0."""
    args = ["train", "folder", "data", "--out", "runs/a", "--resume", "--jobs", 1]  # nothing to do
    done = _coaudio_with_ctrl_c_at("shutdown", *args, cwd=project, folder=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "already finished 1 epoch(s)" in done.stderr and "Traceback" not in done.stderr


def test_evaluate_stream_and_classify_report_the_same_hop_times(project):
    """One timing formula: hop h ends at the same stream time in all three reports."""
    import csv

    run = project / "runs" / "a"
    assert _coaudio("evaluate", run, "--streaming", "--compare-clips", 0, cwd=project).returncode == 0
    curve = list(csv.DictReader((run / "eval" / "per-hop-test.csv").read_text().splitlines()))
    clip = json.loads((run / "config.json").read_text())["paths"]["test"][0]
    streamed = _coaudio("stream", run, clip, cwd=project)
    classified = _coaudio(
        "classify", run, clip, "--timeline", "--format", "jsonl", "--jobs", 1, "-q", cwd=project
    )
    stream_ends = [json.loads(line)["end_s"] for line in streamed.stdout.splitlines()]
    timeline_ends = [entry["end_s"] for entry in json.loads(classified.stdout)["timeline"]]
    curve_ends = [float(row["time_s"]) for row in curve][: len(stream_ends)]
    assert len(stream_ends) > 5 and stream_ends == timeline_ends == curve_ends


def test_a_checkpoint_is_evaluated_on_a_labelled_folder(project, tmp_path):
    checkpoint = project / "runs" / "a" / "best.safetensors"
    done = _coaudio("evaluate", checkpoint, "--data", "data", cwd=project)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((project / "runs" / "a" / "eval" / "metrics-folder.json").read_text())
    assert metrics["clips"] == 30 and "split: the folder data" in metrics["evaluated"]
    assert "(split: the folder data;" in " ".join(done.stdout.split())
    alone = _coaudio("evaluate", checkpoint, cwd=project)
    assert alone.returncode == 1 and "--data DIR" in alone.stderr
    (tmp_path / "techno").mkdir()
    shutil.copy(next((project / "data" / "drone").iterdir()), tmp_path / "techno" / "x.wav")
    odd = _coaudio("evaluate", checkpoint, "--data", tmp_path, cwd=project)
    assert odd.returncode == 1 and "does not know: techno" in odd.stderr


def test_python_callers_train_and_evaluate_through_the_library(project, tmp_path, monkeypatch):
    """coaudio.runs is what the commands run: usable without the CLI, from any directory."""
    from coaudio.config import from_dict
    from coaudio.data.gtzan import random_split
    from coaudio.data.tracks import list_labelled
    from coaudio.runs import evaluate_run, train_run
    from coaudio.train.config import Recipe
    from coaudio.train.run import RunError

    monkeypatch.chdir(tmp_path)
    recipe = from_dict(Recipe, {"model": {"encoder": {"window": 8}}, "train": {"epochs": 1, "threads": 1}})
    splits = random_split(list_labelled(project / "data"), seed=0)
    result = train_run(recipe, splits, tmp_path / "run", project / "data", jobs=1)
    assert result.trained and (tmp_path / "run" / "best.safetensors").is_file()
    run = RunFolder(tmp_path / "run")
    assert run.last.is_file() and [m["epoch"] for m in run.metrics()] == [1] and run.labels == result.labels
    evaluation = evaluate_run(tmp_path / "run", streaming=True, compare_clips=0)
    assert evaluation.document["clips"] == len(splits["test"]) and evaluation.stream.curve
    assert (tmp_path / "run" / "eval" / "metrics-test.json").is_file()
    with pytest.raises(RunError, match="already holds a training run"):
        train_run(recipe, splits, tmp_path / "run", project / "data", jobs=1)


def test_an_empty_split_is_named_as_such_not_as_missing_files(tmp_path):
    """A tiny set's random split can leave no test clips: '0 of the 0 test files were not found'
    sent users looking for moved data."""
    from types import SimpleNamespace

    from coaudio.train.run import SplitFiles, missing_data_message

    run = SimpleNamespace(path=tmp_path / "run")  # the message needs only where the run is
    message = missing_data_message(run, "test", SplitFiles([], [], []))
    assert "has no test files" in message and "--split" in message and "not found" not in message
