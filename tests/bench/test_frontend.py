"""`coaudio bench frontend --quick` on tiny sizes, as a real process: the record's keys and
both tables (no timing is asserted: the numbers depend on the machine and its load)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_quick_run_records_both_recipes_and_batched_hops_and_the_tables_show_them():
    """One real process (2 clips, 1 round, 1 and 3 streams; its 2-core figure from two spawned
    worker processes): JSON alone on stdout; then the tables drawn from that record."""
    from rich.console import Console

    from coaudio_cli.bench import _per_hop_table, _throughput_table

    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "bench", "frontend", "--quick", "--streams", "1,3", "--json", "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # stdout holds the document and nothing else
    assert document["machine"]["torch"]
    record = document["frontend"]

    assert record["clips"] == 2 and record["audio_s"] == 60  # 2 clips of 30 s
    for key in (
        "coaudio_1core_xrt",
        "coaudio_2core_xrt",
        "librosa_1core_xrt",
        "speedup_vs_librosa",
        "gtzan_8_3h_2core_s",
    ):
        assert record[key] > 0
    assert record["speedup_vs_librosa"] == pytest.approx(
        record["coaudio_1core_xrt"] / record["librosa_1core_xrt"]
    )
    musicnn = record["musicnn"]
    assert musicnn["speedup_vs_librosa"] == pytest.approx(
        musicnn["coaudio_1core_xrt"] / musicnn["librosa_1core_xrt"]
    )
    assert [row["streams"] for row in record["per_hop"]] == [1, 3]
    for row in record["per_hop"]:
        assert row["hop_s"] == pytest.approx(0.96)
        assert row["speedup"] == pytest.approx(row["one_by_one_ms"] / row["batched_ms"])
        assert row["batched_us_per_stream"] == pytest.approx(row["batched_ms"] * 1e3 / row["streams"])

    # the tables show the ratios
    console = Console(width=160, record=True)
    console.print(_throughput_table(record))
    console.print(_per_hop_table(record["per_hop"]))
    text = console.export_text()
    assert "vs librosa" in text and "VGGish" in text and "musicnn" in text
    assert "batched vs one by one" in text
    assert f"{record['per_hop'][1]['speedup']:.2f}x" in text


def test_stream_counts_are_checked(capsys):
    from coaudio_cli.main import run

    assert run(["bench", "frontend", "--streams", "0"]) == 2
    assert "--streams must be positive integers" in capsys.readouterr().err
