"""`coaudio bench` as a user runs it: a real process, JSON on stdout, a table otherwise.

Each benchmark runs once, as a real process, at a small size; argument checks run in process
(``cli``, tests/cli/conftest.py), one of them also as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REQUIRED = {
    "n",
    "blocks",
    "regular_us",
    "continual_us",
    "speedup",
    "regular_flops",
    "continual_flops",
    "flops_ratio",
    "max_abs_diff",
    "continual_torch_us",
    "kernel",
}


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coaudio", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=None if env is None else {**os.environ, **env},
    )


def test_encoder_suite_writes_the_json_document_and_prints_the_table(tmp_path):
    """One process, both model shapes, 1 and 2 blocks: with ``--json FILE`` the document goes
    to the file (every promised key, continual = regular, the optional reference column) and
    the table still goes to stdout. ``--json -`` (the document alone on stdout) is the same
    writer, checked on a real process by the stream, frontend and train suites below."""
    import importlib.util

    from coaudio.continual import native

    path = tmp_path / "bench.json"
    done = _run(
        "bench",
        "encoder",
        "--models",
        "small,gtzan",
        "--blocks",
        "1,2",
        "--windows",
        "8",
        "--rounds",
        "1",
        "--json",
        str(path),
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(path.read_text())
    assert document["threads"] == 1 and document["machine"]["torch"]
    results = document["results"]
    assert [(r["model"], r["blocks"], r["n"]) for r in results] == [
        ("small", 1, 8),
        ("small", 2, 8),
        ("gtzan", 1, 8),
        ("gtzan", 2, 8),
    ]
    for record in results:
        assert REQUIRED <= record.keys()
        assert record["max_abs_diff"] < 1e-5
        assert record["flops_ratio"] > 1
        assert record["continual_flops"] == record["continual_flops_analytic"]
        # without continual-inference the reference column is null; with it, a latency
        if importlib.util.find_spec("continual") is None:
            assert record["reference_us"] is None and record["speedup_vs_reference"] is None
        else:
            assert record["reference_us"] > 0 and record["speedup_vs_reference"] > 0
    if native.library() is not None:
        assert [r["kernel"] for r in results] == ["native", "native-retroactive"] * 2

    # the table: stdout, one row per configuration; the note about the file on stderr
    assert "continual" in done.stdout and "gtzan" in done.stdout and "small" in done.stdout
    assert not done.stdout.lstrip().startswith("{")
    assert f"wrote {path}" in done.stderr


def test_bad_arguments_get_a_clear_error(cli):
    for argv, expected in [
        (["--models", "huge"], "unknown model 'huge'"),
        (["--windows", "0"], "--windows"),
        (["--blocks", "1,x"], "--blocks must be comma-separated integers"),
    ]:
        status, out, err = cli("bench", "encoder", *argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: "), err
        assert expected in lines[0]
    # the same check in a real process (no torch import before it: a fraction of a second)
    bad = _run("bench", "stream", "--frontends", "bogus")
    assert bad.returncode == 2 and "unknown front end 'bogus'" in bad.stderr and bad.stdout == ""


def test_stream_suite_times_the_pipeline_side_by_side_and_a_hop_with_each_front_end(
    tmp_path, cli, monkeypatch
):
    """One process: the whole per-hop pipeline (1 and 2 blocks) and the per-front-end table,
    each front end once; then, in process, --quick with --windows none (the front-end table
    only), and a pretrained front end not fetched, timed with random weights and saying so."""
    from coaudio.bench import frontends

    no_models = {"COAUDIO_MODELS": str(tmp_path / "no-models")}
    done = _run(
        "bench",
        "stream",
        "--windows",
        "8",
        "--blocks",
        "1,2",
        "--frontends",
        "melstats,melstats",
        "--json",
        "-",
        env=no_models,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # stdout holds the document and nothing else
    records = document["stream"]
    assert [(r["blocks"], r["window"]) for r in records] == [(1, 8), (2, 8)]
    for r in records:
        assert r["max_abs_diff"] < 1e-5  # the pipelines agree on every measured hop
        assert r["measured_hops"] == 300 and r["hop_s"] == 0.25
        for name in ("continual", "regular", "regular_cached"):
            assert r[f"{name}_us"] > 0 and r[f"{name}_p95_us"] >= 0 and r[f"{name}_mflops"] > 0
            assert r[f"{name}_rtf"] == r[f"{name}_us"] / 1e6 / 0.25
        assert r["regular_mflops"] > r["regular_cached_mflops"] > r["continual_mflops"]  # counted, not timed
        assert r["speedup_vs_regular"] == r["regular_us"] / r["continual_us"]
    rows = {r["frontend"]: r for r in document["frontends"]}
    assert list(rows) == ["melstats"] and rows["melstats"]["measured_hops"] == 60  # each once

    monkeypatch.setenv("COAUDIO_MODELS", no_models["COAUDIO_MODELS"])
    quick = cli("bench", "stream", "--quick", "--windows", "none", "--frontends", "melstats", "--json", "-")
    assert quick.status == 0, quick.err
    quick_doc = json.loads(quick.out)
    assert quick_doc["stream"] == [] and [r["frontend"] for r in quick_doc["frontends"]] == ["melstats"]
    assert quick_doc["frontends"][0]["measured_hops"] == 20  # --quick
    rows["musicnn"] = frontends.run("musicnn", measured_hops=3)
    assert (
        rows["musicnn"]["weights"] == "random (not fetched)" and rows["musicnn"]["recipe"] == "gtzan-musicnn"
    )
    assert rows["musicnn"]["hop_s"] == 62 * 256 / 16_000 and rows["musicnn"]["patch_s"] == 2.992
    for r in [*rows.values(), *quick_doc["frontends"]]:
        assert r["rtf"] == r["hop_us"] / 1e6 / r["hop_s"] and 0 < r["token_us"] < r["hop_us"]


def test_classify_suite_reports_throughputs():
    from coaudio.bench import throughput

    record = throughput.run(clips=2, rounds=1)
    assert record["audio_s"] == 60.0
    for key in (
        "continual_1core_xrt",
        "continual_2core_xrt",
        "regular_1core_xrt",
        "speedup_vs_regular_1core",
    ):
        assert record[key] > 0
    assert record["speedup_vs_regular_1core"] == pytest.approx(
        record["continual_1core_xrt"] / record["regular_1core_xrt"]
    )


def test_version_and_help():
    done = _run("--version")
    assert done.returncode == 0 and done.stdout.startswith("coaudio ")
    done = _run("--help")
    assert done.returncode == 0 and all(
        c in done.stdout for c in ("bench", "features", "data", "stream", "devices", "classify")
    )


def test_bench_train_quick_compares_the_three_training_paths():
    done = _run("bench", "train", "--quick", "--threads", "1", "--json", "-")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)["train"]
    assert record["threads"] == 1
    paths = [r["path"] for r in record["rows"]]
    assert paths == [
        "gtzan, per-window batches (before)",
        "gtzan, shared batches",
        "gtzan-melstats, frozen tokens",
    ]
    for row in record["rows"]:
        assert row["windows_per_s"] > 0 and row["epoch_s"] > 0
        assert row["run_min"] == pytest.approx(row["epochs"] * row["epoch_s"] / 60)
    assert record["rows"][2]["caching_s"] >= 0


@pytest.mark.parametrize(
    "command,benchmark",
    [
        (["train", "--quick"], "coaudio.bench.training"),
        (["startup", "--quick"], "coaudio.bench.startup"),
        (["frontend"], "coaudio.bench.frontend"),
    ],
)
def test_an_unwritable_json_path_is_refused_before_benchmarking(
    tmp_path, cli, monkeypatch, command, benchmark
):
    """The benchmark takes seconds to minutes: a bad --json must stop it before, in one line."""
    import importlib

    def never(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(importlib.import_module(benchmark), "run", never)  # a tripwire, not a stand-in
    for bad, why in [(tmp_path / "missing" / "x.json", "does not exist"), (tmp_path, "is a folder")]:
        status, _, err = cli("bench", *command, "--json", bad)
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert why in lines[0] and "internal error" not in err  # nothing was benchmarked
