"""Training on the synthetic set: it learns, and an interrupted run resumes to the same bits."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from coaudio.data.synth import SynthConfig, write_dataset
from coaudio.models.checkpoint import load_checkpoint

BASE = [
    "--set",
    "model.encoder.window=8",
    "--set",
    "train.threads=1",
    "--set",
    "data.windows_per_clip=3",
    "--jobs",
    "1",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, SynthConfig(per_genre=8, seconds=3.0, seed=5))
    return root


def _train(dataset, out, epochs, *extra, background=False):
    args = [
        sys.executable,
        "-m",
        "coaudio",
        "train",
        "folder",
        str(dataset),
        "--out",
        str(out),
        "--set",
        f"train.epochs={epochs}",
        *BASE,
        *extra,
    ]
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def _model_tensors(run):
    return {k: v for k, v in load_file(str(run / "last.safetensors")).items() if k.startswith("model.")}


def test_a_run_learns_and_leaves_a_complete_folder(dataset, tmp_path):
    done = _train(dataset, tmp_path / "run", 4)
    assert done.returncode == 0, done.stderr
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert re.search(
        r"epoch 4: loss [\d.]+, train [\d.]+, valid [\d.]+ \([\d.]+ s, \d+ windows/s\)", done.stderr
    )
    assert history[-1]["train_accuracy"] > 0.6  # 5 classes: chance is 0.2
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[
        0
    ] == "epoch,loss,train_accuracy,valid_accuracy,valid_loss"
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 5
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["labels"] == ["chimes", "drone", "fourfloor", "noiserock", "waltz"]
    assert sum(len(v) for v in config["splits"].values()) == 40
    model, labels, info = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert labels == config["labels"] and 1 <= info["epoch"] <= 4
    assert "clip accuracy" in done.stdout

    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "coaudio",
            "evaluate",
            str(tmp_path / "run"),
            "--streaming",
            "--compare-clips",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    folder = tmp_path / "run" / "eval"
    report = json.loads((folder / "metrics-test.json").read_text())
    n_test = len(config["splits"]["test"])
    assert sum(map(sum, report["confusion"])) == n_test
    assert [c["label"] for c in report["per_class"]] == labels
    stream = report["streaming"]
    assert stream["compared_hops"] > 0 and stream["max_logit_diff"] < 1e-5  # continual == regular
    assert stream["continual_flops"] < stream["regular_flops"]
    assert stream["curve"][0]["time_s"] == 0.975 and stream["curve"][0]["clips"] == n_test
    rows = (folder / "per-hop-test.csv").read_text().splitlines()
    assert rows[0] == "hop,time_s,accuracy,clips" and len(rows) == len(stream["curve"]) + 1
    assert (folder / "confusion-test.png").stat().st_size > 1000
    assert (folder / "per-hop-test.png").stat().st_size > 1000


def test_resume_after_sigkill_ends_with_the_same_weights(dataset, tmp_path):
    reference = _train(dataset, tmp_path / "a", 3)
    assert reference.returncode == 0, reference.stderr
    proc = _train(dataset, tmp_path / "b", 3, background=True)
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().strip()):  # killed somewhere after epoch 1
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = _train(dataset, tmp_path / "b", 3, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _model_tensors(tmp_path / "a"), _model_tensors(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == metrics.read_text()


def test_resume_may_train_longer_but_not_differently(dataset, tmp_path):
    assert _train(dataset, tmp_path / "c", 2).returncode == 0
    longer = _train(dataset, tmp_path / "c", 3, "--resume")
    assert longer.returncode == 0, longer.stderr
    assert len((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()) == 3
    other = _train(dataset, tmp_path / "c", 3, "--resume", "--set", "train.lr=0.1")
    assert other.returncode == 1 and "train.lr: run 0.002, now 0.1" in other.stderr


def test_bad_inputs(dataset, tmp_path):
    (tmp_path / "d" / "only").mkdir(parents=True)  # one label: too few to classify
    (tmp_path / "d" / "only" / "a.wav").write_bytes(b"")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coaudio",
            "train",
            "folder",
            str(tmp_path / "d"),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "need at least 2" in " ".join(done.stderr.replace("│", " ").split())
    done = _train(dataset, tmp_path / "r2", 1, "--set", "train.learning_rate=1")
    assert done.returncode != 0 and "unknown key" in " ".join(done.stderr.replace("│", " ").split())


def _rank_logs(folder) -> str:
    """What each rank wrote to stderr (torchrun --redirects): when a launch fails, torchrun's
    own summary only names the rank and its exit code, and a traceback scrolls out of view."""
    return "".join(f"--- {log}:\n{log.read_text()[-3000:]}\n" for log in sorted(folder.rglob("stderr.log")))


def test_two_processes_under_torchrun_match_one_process(dataset, tmp_path):
    """DDP (gloo, 2 CPU processes) stays in sync and equals a single process on the same
    global batch, up to float rounding of the gradient all-reduce. Dropout is off: each rank
    draws its own masks, which legitimately differ from one process's."""
    no_dropout = ["--set", "model.encoder.layer.dropout=0.0"]
    settings = ["--set", "train.epochs=2", *BASE, *no_dropout]
    single = _train(dataset, tmp_path / "one", 2, *no_dropout)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "--log-dir",  # each rank's stderr in a file of its own, shown if the launch fails
            str(tmp_path / "logs"),
            "--redirects",
            "2",
            "-m",
            "coaudio",
            "train",
            "folder",
            str(dataset),
            "--out",
            str(tmp_path / "two"),
            *settings,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ddp.returncode == 0, _rank_logs(tmp_path / "logs") + ddp.stderr[-3000:]
    report = json.loads((tmp_path / "two" / "distributed.json").read_text())
    assert report == {"world_size": 2, "max_parameter_spread": 0.0}
    a, b = _model_tensors(tmp_path / "one"), _model_tensors(tmp_path / "two")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    # Adam moves a weight whose gradient is ~0 by up to lr per step whatever its size, so the
    # all-reduce's rounding shows at that scale; a different computation would be far larger.
    assert worst < 2e-3, worst  # lr = 2e-3: less than one Adam step apart after 6 steps
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("one", "two")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    assert ddp.stdout.count("clip accuracy") == 1  # only rank 0 reports


@pytest.mark.parametrize("kind", ["vggish", "melstats"])
def test_training_on_fixed_tokens(dataset, tmp_path, kind):
    """With data.frontend.kind = vggish, clips become VGGish embeddings (here: a randomly
    initialised network saved in the public layout); with melstats, per-band statistics of each
    patch. The model trains on those tokens, and streams them hop by hop."""
    from safetensors.torch import save_file

    from coaudio.features.embed import VGGish

    options = ["--set", f"data.frontend.kind={kind}", "--set", "model.token_dim=128"]
    if kind == "vggish":  # the shipped recipe (standardised tokens), with a weight file by path
        weights = tmp_path / "vggish.safetensors"
        save_file({k: v.contiguous() for k, v in VGGish().state_dict().items()}, str(weights))
        options = ["--recipe", "gtzan-vggish", "--set", "model.encoder.layer.d_model=32"]
        options += ["--set", f'data.frontend.weights="{weights}"', "--set", "data.frontend.hop_frames=96"]
    done = _train(dataset, tmp_path / "vg", 1, *options)
    assert done.returncode == 0, done.stderr[-3000:]
    model, _, _ = load_checkpoint(tmp_path / "vg" / "best.safetensors")
    assert model.cfg.inputs == "tokens" and model.cfg.token_dim == 128
    assert model.cfg.token_norm == (kind == "vggish") and (
        kind != "vggish" or float(model.token_std.min()) > 0
    )
    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "coaudio",
            "evaluate",
            str(tmp_path / "vg"),
            "--streaming",
            "--compare-clips",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    stream = json.loads((tmp_path / "vg" / "eval" / "metrics-test.json").read_text())["streaming"]
    assert stream["compared_hops"] > 0 and stream["max_logit_diff"] < 1e-5


def test_vggish_recipe_defaults_to_the_stores_model_and_needs_128_dims():
    from coaudio.config import ConfigError, from_dict
    from coaudio.train.config import Recipe

    recipe = from_dict(Recipe, {"data": {"frontend": {"kind": "vggish"}}})
    assert recipe.frontend.weights == "vggish"  # the model store's VGGish (coaudio models fetch vggish)
    with pytest.raises(ConfigError, match="token_dim = 128"):
        from_dict(Recipe, {"data": {"features": "vggish", "vggish_weights": "w"}, "model": {"token_dim": 64}})


def test_train_gtzan_on_a_gtzan_shaped_tree(tmp_path):
    from tests.data.test_gtzan import _tree

    _tree(tmp_path / "gtzan", "original", per_genre=4, seconds=1.2)  # 40 AU clips, 22.05 kHz
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coaudio",
            "train",
            "gtzan",
            str(tmp_path / "gtzan"),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "data.split=random",
            "--set",
            "train.epochs=1",
            *BASE,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(config["labels"]) == 10 and sum(len(v) for v in config["splits"].values()) == 40


@pytest.mark.parametrize("recipe", ["gtzan", "gtzan-melstats"])
def test_the_shipped_gtzan_recipes_train_with_their_augmentation(dataset, tmp_path, recipe):
    """Seconds-long versions of the real recipes: their augmentation, label smoothing and
    early stopping run on the same code paths as a full run."""
    done = _train(
        dataset, tmp_path / recipe, 2, "--recipe", recipe, "--set", "model.encoder.layer.d_model=32"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / recipe / "config.json").read_text())
    augment = config["recipe"]["train"]["augment"]
    assert augment["mixup"] > 0 if recipe == "gtzan-melstats" else augment["time_masks"] > 0
    assert "epoch 2: loss" in done.stderr
