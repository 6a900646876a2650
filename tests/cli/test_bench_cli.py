"""`coaudio bench` as a user runs it: a real process, JSON on stdout, a table otherwise."""

from __future__ import annotations

import json
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


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coaudio", *args], capture_output=True, text=True, timeout=300
    )


def test_bench_json_document_has_the_promised_keys():
    done = _run(
        "bench",
        "encoder",
        "--models",
        "small",
        "--blocks",
        "1,2",
        "--windows",
        "8",
        "--rounds",
        "1",
        "--json",
        "-",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["threads"] == 1 and document["machine"]["torch"]
    results = document["results"]
    assert [(r["blocks"], r["n"]) for r in results] == [(1, 8), (2, 8)]
    for record in results:
        assert REQUIRED <= record.keys()
        assert record["max_abs_diff"] < 1e-5
        assert record["flops_ratio"] > 1
        assert record["continual_flops"] == record["continual_flops_analytic"]
    from coaudio.continual import native

    if native.library() is not None:
        assert [r["kernel"] for r in results] == ["native", "native-retroactive"]


def test_bench_table_goes_to_stdout():
    done = _run("bench", "encoder", "--models", "gtzan", "--blocks", "1", "--windows", "4", "--rounds", "1")
    assert done.returncode == 0, done.stderr
    assert "continual" in done.stdout and "gtzan" in done.stdout


def test_bad_arguments_get_a_clear_error():
    done = _run("bench", "encoder", "--models", "huge")
    assert done.returncode != 0
    assert "unknown model 'huge'" in done.stderr
    done = _run("bench", "encoder", "--windows", "0")
    assert done.returncode != 0
    assert "--windows" in done.stderr


def test_reference_column_is_optional():
    """Without continual-inference the column is null; with it, it is a latency."""
    import importlib.util

    done = _run(
        "bench",
        "encoder",
        "--models",
        "small",
        "--blocks",
        "1",
        "--windows",
        "8",
        "--rounds",
        "1",
        "--json",
        "-",
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)["results"][0]
    if importlib.util.find_spec("continual") is None:
        assert record["reference_us"] is None and record["speedup_vs_reference"] is None
    else:
        assert record["reference_us"] > 0 and record["speedup_vs_reference"] > 0


def test_frontend_suite_reports_throughputs():
    done = _run("bench", "frontend", "--json", "-")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)["frontend"]
    for key in ("coaudio_1core_xrt", "coaudio_2core_xrt", "librosa_1core_xrt", "speedup_vs_librosa"):
        assert record[key] > 0
    assert record["audio_s"] == 600


def test_stream_suite_times_the_whole_pipeline_side_by_side():
    done = _run("bench", "stream", "--windows", "8", "--blocks", "1,2", "--frontends", "none", "--json", "-")
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)["stream"]
    assert [(r["blocks"], r["window"]) for r in records] == [(1, 8), (2, 8)]
    for r in records:
        assert r["max_abs_diff"] < 1e-5  # the pipelines agree on every measured hop
        assert r["measured_hops"] == 300 and r["hop_s"] == 0.25
        for name in ("continual", "regular", "regular_cached"):
            assert r[f"{name}_us"] > 0 and r[f"{name}_p95_us"] >= 0 and r[f"{name}_mflops"] > 0
            assert r[f"{name}_rtf"] == r[f"{name}_us"] / 1e6 / 0.25
        assert r["regular_mflops"] > r["regular_cached_mflops"] > r["continual_mflops"]  # counted, not timed
        assert r["speedup_vs_regular"] == r["regular_us"] / r["continual_us"]


def test_stream_suite_times_a_hop_with_each_front_end(tmp_path, monkeypatch):
    """Per front end, with its shipped recipe; a pretrained one not fetched is timed with random
    weights of the same shape, and says so."""
    from coaudio.bench import frontends

    monkeypatch.setenv("COAUDIO_MODELS", str(tmp_path / "no-models"))
    done = _run(
        "bench", "stream", "--quick", "--windows", "none", "--frontends", "melstats,melstats", "--json", "-"
    )
    assert done.returncode == 0, done.stderr
    rows = {r["frontend"]: r for r in json.loads(done.stdout)["frontends"]}
    assert list(rows) == ["melstats"] and rows["melstats"]["measured_hops"] == 20  # each once, --quick
    rows["musicnn"] = frontends.run("musicnn", measured_hops=3)  # the same code in process: cheaper
    assert (
        rows["musicnn"]["weights"] == "random (not fetched)" and rows["musicnn"]["recipe"] == "gtzan-musicnn"
    )
    assert rows["musicnn"]["hop_s"] == 62 * 256 / 16_000 and rows["musicnn"]["patch_s"] == 2.992
    for r in rows.values():
        assert r["rtf"] == r["hop_us"] / 1e6 / r["hop_s"] and 0 < r["token_us"] < r["hop_us"]
    bad = _run("bench", "stream", "--frontends", "bogus")
    assert bad.returncode == 2 and "unknown front end 'bogus'" in bad.stderr


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


@pytest.mark.parametrize("command", [["train", "--quick"], ["startup", "--quick"], ["frontend"]])
def test_an_unwritable_json_path_is_refused_before_benchmarking(tmp_path, capsys, command):
    """The benchmark takes seconds to minutes: a bad --json must stop it before, in one line."""
    import time

    from coaudio_cli.main import run

    for bad, why in [(tmp_path / "missing" / "x.json", "does not exist"), (tmp_path, "is a folder")]:
        started = time.perf_counter()
        status = run(["bench", *command, "--json", str(bad)])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert why in lines[0] and "internal error" not in err
        assert time.perf_counter() - started < 2  # nothing was benchmarked
