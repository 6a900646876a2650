"""``coaudio bench serve``: the regular engines give the continual engine's hops, and the
command runs end to end on tiny sizes (a real server, real clients, loopback only)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from rich.console import Console

from coaudio.bench.serve import TrialSettings, search, summarize
from coaudio.online.engine import Engine
from coaudio.online.model import load_online
from coaudio.serve import regular as regular_module
from coaudio.serve.regular import RegularEngine, make_engine
from coaudio_cli.bench_serve import notes, summary_table, trials_table
from tests.online.helpers import make_checkpoint, tone_mix

RATES = [16_000, 22_050, 8_000]


@pytest.fixture(scope="module", params=[1, 2], ids=["1-block", "2-block"])
def online(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("regular")
    return load_online(
        make_checkpoint(folder / "m.safetensors", hop_frames=20, window=6, n_layers=request.param)
    )


def _run(engine, audio: list[np.ndarray]) -> dict[int, list]:
    """Interleaved random-sized pushes; stream 2 joins late; each stream closes when done."""
    got: dict[int, list] = {i: [] for i in range(len(audio))}
    rng = np.random.default_rng(3)
    positions = [0] * len(audio)
    joins = [0, 0, 4]
    round_ = 0
    while any(i in engine.streams or positions[i] < len(audio[i]) for i in range(len(audio))):
        blocks = {}
        for i, rate in enumerate(RATES):
            if round_ == joins[i]:
                engine.open(i, rate)
            if i in engine.streams and positions[i] < len(audio[i]):
                size = int(rng.integers(1, 12_000))
                blocks[i] = audio[i][positions[i] : positions[i] + size]
                positions[i] += size
        for i, hops in engine.push_many(blocks).items():
            got[i] += hops
        for i in list(engine.streams):
            if positions[i] >= len(audio[i]):
                got[i] += engine.close(i)
        round_ += 1
    return got


@pytest.mark.parametrize("kind", ["regular", "regular-cached", "regular, one window per forward"])
def test_regular_engines_give_the_continual_engines_hops(online, kind, monkeypatch):
    if kind.startswith("regular,"):
        monkeypatch.setattr(regular_module, "PATCHES_PER_FORWARD", 1)  # every window on its own
        kind = "regular"
    audio = [tone_mix(3.0 + i, rate, seed=i)[:, 0] for i, rate in enumerate(RATES)]
    expected = _run(Engine(online), audio)
    regular = make_engine(online, kind)
    assert isinstance(regular, RegularEngine) and regular.cached == (kind == "regular-cached")
    got = _run(regular, audio)
    for i in range(len(RATES)):
        assert len(got[i]) == len(expected[i]) > online.window + 2  # windows that slid
        for a, b in zip(got[i], expected[i]):
            assert (a.index, a.start_s, a.end_s, a.warmup) == (b.index, b.start_s, b.end_s, b.warmup)
            torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-5)
            assert a.top(1)[0][0] == b.top(1)[0][0]
            assert torch.equal(a.token, b.token)
    assert regular.streams == []


def test_make_engine_names():
    assert make_engine(None, "continual") is None  # the hub's own engine
    with pytest.raises(ValueError, match="continual, regular, regular-cached"):
        make_engine(None, "fast")


def test_search_doubles_then_bisects_to_the_precision():
    tried = []

    def measure(n):
        tried.append(n)
        return {"streams": n, "ok": n <= 300}

    result = search(measure, start=8, cap=1024, budget_s=1e6, precision=0.1)
    assert tried[:7] == [8, 16, 32, 64, 128, 256, 512]
    assert result["max_streams"] <= 300 < result["first_failing"]
    assert result["first_failing"] - result["max_streams"] <= 0.1 * result["max_streams"]
    assert result["at_max"]["streams"] == result["max_streams"]
    assert len(tried) == len(result["trials"]) <= 12


def test_search_stops_at_the_cap_and_when_nothing_passes():
    carried = search(lambda n: {"streams": n, "ok": True}, start=3, cap=10, budget_s=1e6)
    assert carried["max_streams"] == 10 and carried["first_failing"] is None
    assert [t["streams"] for t in carried["trials"]] == [3, 6, 10]
    none = search(lambda n: {"streams": n, "ok": False}, start=4, cap=10, budget_s=1e6)
    assert none["max_streams"] == 0 and none["at_max"] is None
    assert [t["streams"] for t in none["trials"]] == [4, 2, 1]


def _raw(lags_ms: list[float], expected: int | None = None, aborted: bool = False) -> dict:
    hops = [
        (1.0 + 0.25 * i, 40.0, lag, 30.0) for i, lag in enumerate(lags_ms)
    ]  # (end_s, latency, lag, server)
    stream = {"expected": len(hops) if expected is None else expected, "hops": hops, "late_ms_p95": 1.0}
    stream.update(dropped=0, ended=True, error=None)
    return {"plan": {"streams": 1}, "aborted": aborted, "usage": {"server_cores": 0.5}, "streams": [stream]}


def test_a_stream_is_ok_when_its_hops_arrive_in_time_and_do_not_fall_behind():
    settings = TrialSettings(trial_s=2.0)
    steady = summarize(_raw([60.0, 80.0, 55.0, 70.0, 65.0, 75.0, 60.0, 70.0]), settings)
    assert steady["ok"] and steady["p95_ms"] == 40.0 and steady["hops_per_s"] == 4.0
    behind = summarize(_raw([60.0 + 50 * i for i in range(8)]), settings)  # the lag grows every hop
    assert not behind["ok"] and "falling behind" in behind["reason"]
    missing = summarize(_raw([60.0] * 8, expected=9), settings)
    assert not missing["ok"] and "hops missing" in missing["reason"]
    assert not summarize(_raw([60.0] * 8, aborted=True), settings)["ok"]


def test_bench_serve_command_on_tiny_sizes(tmp_path):
    """The real command: a server per engine, two paced clients, one short trial each."""
    checkpoint = make_checkpoint(tmp_path / "m.safetensors", hop_frames=20, window=6)
    args = ["--checkpoint", checkpoint, "--engines", "continual,regular", "--start", "2"]
    args += ["--max-streams", "2", "--trial-s", "2", "--warmup-s", "1", "--ramp-s", "0.5", "--chunk-s", "0.1"]
    # limits no loaded machine misses: this checks that everything arrives, not how fast
    args += ["--max-p95-ms", "60000", "--max-drift-ms", "60000", "--budget-s", "120", "--json", "-"]
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "bench", "serve", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document["engines"]) == {"continual", "regular"}
    for result in document["engines"].values():
        (trial,) = result["trials"]
        assert trial["ok"], trial["reason"]
        assert result["max_streams"] == 2 and result["stopped"] == "the cap (2) carried"
        assert trial["hops_per_s"] == pytest.approx(2 / 0.2, rel=0.15)  # two streams, 0.2 s hops
        assert trial["p50_ms"] <= trial["p95_ms"] <= trial["max_ms"]
        assert trial["server_cores"] > 0
    assert document["ratio_vs_regular"] == 1.0
    assert document["model"] == {"window": 6, "blocks": 1, "checkpoint": str(checkpoint)}

    out = Console(file=io.StringIO(), width=240)
    for table in (summary_table(document), trials_table(document)):
        out.print(table)
    text = out.file.getvalue() + "\n".join(notes(document))
    assert "max streams" in text and "continual / regular: 1.0x" in text and "pinning" in text
    assert "priority: " in text and document["priority"]["asked"] in (None, -20)
    assert "ms/hop" in text  # the server's CPU per hop, next to its cores
    assert set(document["probe_ms_per_hop"]) == {"before continual", "before regular", "end"}
