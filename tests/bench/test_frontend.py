"""`coaudio bench frontend --quick` on tiny sizes: the record's keys and both tables (no timing
is asserted: the numbers depend on the machine and its load)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def record() -> dict:
    """One quick run, in process: 2 clips, 1 round, 1 and 3 streams."""
    import contextlib
    import io

    from coaudio_cli.main import run

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = run(["bench", "frontend", "--quick", "--streams", "1,3", "--json", "-"])
    assert status == 0
    return json.loads(out.getvalue())["frontend"]


def test_quick_record_compares_both_recipes_and_batched_hops(record):
    assert record["audio_s"] == 60  # 2 clips of 30 s
    for key in ("coaudio_1core_xrt", "coaudio_2core_xrt", "librosa_1core_xrt", "speedup_vs_librosa"):
        assert record[key] > 0
    musicnn = record["musicnn"]
    assert musicnn["speedup_vs_librosa"] == pytest.approx(
        musicnn["coaudio_1core_xrt"] / musicnn["librosa_1core_xrt"]
    )
    assert [row["streams"] for row in record["per_hop"]] == [1, 3]
    for row in record["per_hop"]:
        assert row["hop_s"] == pytest.approx(0.96)
        assert row["speedup"] == pytest.approx(row["one_by_one_ms"] / row["batched_ms"])
        assert row["batched_us_per_stream"] == pytest.approx(row["batched_ms"] * 1e3 / row["streams"])


def test_tables_show_the_ratios(record):
    from rich.console import Console

    from coaudio_cli.bench import _per_hop_table, _throughput_table

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
