"""`coaudio train folder` splits as the user asked, says which split it used, records it, keeps
it on resume, and cross-validates; `coaudio evaluate` names the split of every number."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

import pytest

from coaudio.data.synth import SynthConfig, write_dataset
from coaudio_cli.main import run
from tests.train.test_train import BASE

GROUP = r"^([^/]+/rec\d+)_"  # the label folder and the recording: rec0 of two labels differ
FAST = ["--set", "train.epochs=1", *BASE]


def _recordings(root, per_genre=6, clips=2):
    """Synthetic clips renamed as ``<label>/rec<R>_clip<C>.wav``: ``per_genre / clips``
    recordings of ``clips`` clips per label."""
    write_dataset(root, SynthConfig(per_genre=per_genre, seconds=3.0, seed=3))
    for label in [p for p in root.iterdir() if p.is_dir()]:
        for i, clip in enumerate(sorted(label.glob("*.wav"))):
            clip.rename(label / f"rec{i // clips}_clip{i % clips}.wav")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _recordings(tmp_path_factory.mktemp("splits") / "data")


def _coaudio(capsys, *args):
    status = run([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_error(status, err, expected):
    lines = [line for line in err.splitlines() if line.strip()]
    assert status != 0 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], err


def _recording_of(path: str) -> str:
    label, name = path.split("/")[-2:]
    return f"{label}/{name.split('_')[0]}"


def test_a_grouped_run_is_recorded_reported_and_kept_on_resume(data, tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = _coaudio(capsys, "train", "folder", data, "--out", out, "--group", GROUP, *FAST)
    assert status == 0, err
    assert f"split: 80/10/10 by recording (--group '{GROUP}'), stratified by label, seed 0" in err
    config = json.loads((out / "config.json").read_text())
    assert config["split"]["method"] == "group" and config["split"]["regex"] == GROUP
    where = {}
    for name, files in config["files"].items():
        for file in files:
            where.setdefault(_recording_of(file), set()).add(name)
    assert len(where) == 15 and all(len(names) == 1 for names in where.values())

    status, out_text, err = _coaudio(capsys, "evaluate", out, "--streaming", "--compare-clips", 0)
    assert status == 0, err
    heading = " ".join(out_text.split())
    assert f"(test split: 80/10/10 by recording (--group '{GROUP}')" in heading
    assert "streaming (test split: 80/10/10 by recording" in heading
    metrics = json.loads((out / "eval" / "metrics-test.json").read_text())
    assert metrics["split_method"] == config["split"] and "by recording" in metrics["evaluated"]

    shutil.copy(data / "drone" / "rec0_clip0.wav", data / "drone" / "rec9_clip0.wav")  # new since
    try:
        status, _, err = _coaudio(
            capsys, "train", "folder", data, "--out", out, "--resume", "--set", "train.epochs=2", "--jobs", 1
        )
        assert status == 0, err
        assert "resuming with the run's own split" in err and "after epoch 1 of 2" in err
        again = json.loads((out / "config.json").read_text())
        assert again["files"] == config["files"] and again["split"] == config["split"]
        status, _, err = _coaudio(
            capsys, "train", "folder", data, "--out", out, "--resume", "--group", r"(rec\d+)", "--jobs", 1
        )
        _one_error(status, err, "the run's split is \"80/10/10 by recording")
        assert "the options ask for \"80/10/10 by recording (--group '(rec\\d+)')" in err
    finally:
        (data / "drone" / "rec9_clip0.wav").unlink()


def test_the_random_fallback_says_so_and_a_folder_evaluation_names_its_folder(data, tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = _coaudio(capsys, "train", "folder", data, "--out", out, *FAST)
    assert status == 0, err
    assert (
        "warning: split: random 80/10/10 by file, seed 0; clips of one recording may straddle train and "
        "test: use --splits, --group or train/valid/test folders"
    ) in err
    assert json.loads((out / "config.json").read_text())["split"]["method"] == "random"
    status, out_text, err = _coaudio(capsys, "evaluate", out / "best.safetensors", "--data", data)
    assert status == 0, err
    assert f"(split: the folder {data};" in " ".join(out_text.split())
    metrics = json.loads((out / "eval" / "metrics-folder.json").read_text())
    assert metrics["split_method"] == {
        "method": "folder",
        "folder": str(data),
        "description": f"the folder {data}",
    }


def test_a_csv_and_a_folder_layout_are_the_split(data, tmp_path, capsys):
    labels = sorted(p for p in data.iterdir() if p.is_dir())
    files = [sorted(f.relative_to(data).as_posix() for f in label.glob("*.wav")) for label in labels]
    chosen = {  # 4 per label train, the 5th of 3 labels valid, the 6th of 4 labels test: 3 left out
        "train": [f for per_label in files for f in per_label[:4]],
        "valid": [per_label[4] for per_label in files[:3]],
        "test": [per_label[5] for per_label in files[:4]],
    }
    csv = tmp_path / "splits.csv"
    csv.write_text("path,split\n" + "".join(f"{f},{name}\n" for name, fs in chosen.items() for f in fs))
    status, _, err = _coaudio(
        capsys, "train", "folder", data, "--out", tmp_path / "csv", "--splits", csv, *FAST
    )
    assert status == 0, err
    assert f"split: from the file {csv}" in err and f"3 of the 30 files under {data} are not in {csv}" in err
    config = json.loads((tmp_path / "csv" / "config.json").read_text())
    assert config["split"] == {"method": "file", "csv": str(csv), "description": f"from the file {csv}"}
    assert config["files"]["test"] == chosen["test"]

    layout = tmp_path / "layout"
    for name, fs in chosen.items():
        for f in fs:
            (layout / name / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(data / f, layout / name / f)
    status, _, err = _coaudio(capsys, "train", "folder", layout, "--out", tmp_path / "folders", *FAST)
    assert status == 0, err
    assert "split: the train/valid/test folders" in err
    assert "has no files for" in err  # valid/ and test/ lack some labels: named, not fatal
    config = json.loads((tmp_path / "folders" / "config.json").read_text())
    assert config["split"]["method"] == "folders" and len(config["files"]["test"]) == 4
    status, _, err = _coaudio(capsys, "train", "folder", layout, "--out", tmp_path / "x", "--folds", 2)
    _one_error(status, err, "train/valid/test folders, which fix the split; --folds")


@pytest.mark.parametrize(
    "rows,options,expected",
    [
        ("path,split\ndrone/nope.wav,train\n", [], "line 2: drone/nope.wav: no such file"),
        ("path,split\ndrone/rec0_clip0.wav,val\n", [], "line 2: unknown split 'val'"),
        ("file;split\n", [], "the first line must be the header path,split"),
        (
            "path,split\ndrone/rec0_clip0.wav,train\ndrone/rec0_clip1.wav,test\n",
            [],
            "no files for the valid split",
        ),
        ("path,split\n", ["--folds", "2"], "--folds makes its own splits and --splits gives them"),
        ("path,split\n", ["--group", "(x)"], "give one"),
        (None, ["--group", r"rec\d+"], "has no capture group"),
        (None, ["--group", "(rec"], "not a valid regular expression"),
        (None, ["--group", "(nothing)"], "matches none of the 30 file paths"),
        (None, ["--folds", "1"], "at least 2 folds"),
    ],
)
def test_split_problems_are_one_line(data, tmp_path, capsys, rows, options, expected):
    extra = list(options)
    if rows is not None:
        (tmp_path / "s.csv").write_text(rows)
        extra += ["--splits", tmp_path / "s.csv"]
    status, _, err = _coaudio(capsys, "train", "folder", data, "--out", tmp_path / "run", *extra, *FAST)
    _one_error(status, err, expected)
    assert not (tmp_path / "run" / "config.json").exists()


def test_two_folds_end_to_end_and_resumed(data, tmp_path, capsys):
    out = tmp_path / "cv"
    args = ["train", "folder", data, "--out", out, "--folds", 2, "--group", GROUP, *FAST]
    status, out_text, err = _coaudio(capsys, *args)
    assert status == 0, err
    text = " ".join(out_text.split())
    assert "fold 1: " in text and "fold 2: " in text and "(test split: fold 2 of 2 by recording" in text
    assert "mean" in text and "std" in text
    record = json.loads((out / "folds.json").read_text())
    assert record["folds"] == 2 and record["split"]["method"] == "fold" and record["split"]["regex"] == GROUP
    assert [r["fold"] for r in record["results"]] == [1, 2]
    accuracies = [r["test_accuracy"] for r in record["results"]]
    assert record["test_accuracy"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert (
        f"test accuracy {record['test_accuracy']['mean']:.3f} +/- {record['test_accuracy']['std']:.3f}"
        in text
    )
    tested = [
        set(map(_recording_of, json.loads((out / f"fold-{k}" / "config.json").read_text())["files"]["test"]))
        for k in (1, 2)
    ]
    assert not (tested[0] & tested[1]) and len(tested[0] | tested[1]) == 15  # every recording tested once
    for k in (1, 2):
        config = json.loads((out / f"fold-{k}" / "config.json").read_text())
        assert config["split"]["fold"] == k and config["split"]["folds"] == 2
        train, valid = ({_recording_of(f) for f in config["files"][s]} for s in ("train", "valid"))
        assert not (train & valid) and not (train & tested[k - 1]) and not (valid & tested[k - 1])

    status, out_text, err = _coaudio(capsys, "evaluate", out / "fold-1")
    assert status == 0 and "(test split: fold 1 of 2 by recording" in " ".join(out_text.split()), err
    status, _, err = _coaudio(capsys, "evaluate", out)
    _one_error(status, err, "evaluate one of its folds")

    status, _, err = _coaudio(capsys, *args)
    _one_error(status, err, "already holds a cross-validation")
    status, _, err = _coaudio(capsys, "train", "folder", data, "--out", out, "--force", *FAST)
    _one_error(status, err, "holds a cross-validation (folds.json)")  # a single run never joins it
    status, out_text, err = _coaudio(capsys, "train", "folder", data, "--out", out, "--resume", "--jobs", 1)
    assert status == 0, err
    assert err.count("already finished 1 epoch(s)") == 2 and "epoch 1:" not in err  # nothing trained
    assert json.loads((out / "folds.json").read_text())["results"] == record["results"]
    status, _, err = _coaudio(capsys, "train", "folder", data, "--out", out, "--resume", "--folds", 3)
    _one_error(status, err, "the run's split is \"2 folds by recording")


def test_ctrl_c_in_a_fold_resumes_where_it_stopped(data, tmp_path):
    import signal
    import time

    out = tmp_path / "cv"
    args = [
        sys.executable,
        "-m",
        "coaudio",
        "train",
        "folder",
        str(data),
        "--out",
        str(out),
        "--folds",
        "2",
        "--set",
        "train.epochs=2",
        *BASE,
    ]
    job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "fold-1" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130 and "Traceback" not in err, err
    assert "interrupted in fold 1 of 2" in err and "Resume with:" in err
    command = err.split("Resume with:")[1].strip().splitlines()[0]
    resumed = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    for k in (1, 2):
        epochs = [
            json.loads(line)["epoch"]
            for line in (out / f"fold-{k}" / "metrics.jsonl").read_text().splitlines()
        ]
        assert epochs == [1, 2]
    assert len(json.loads((out / "folds.json").read_text())["results"]) == 2
