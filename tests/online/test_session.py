"""A streaming session equals the batch model on the same windows, hop after hop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coaudio.audio import resample
from coaudio.features.frontend import FrontendConfig
from coaudio.online.mic import DropDetector
from coaudio.online.model import OnlineModel, load_online
from coaudio.online.session import Session
from tests.online.helpers import LABELS, make_checkpoint, tone_mix, window_probs


def _stream(online: OnlineModel, signal: np.ndarray, rate: int, chunks, **kwargs):
    session = Session(online, rate, **kwargs)
    hops, at, rng = [], 0, np.random.default_rng(1)
    while at < len(signal):
        size = int(rng.choice(chunks))
        hops += session.push(signal[at : at + size])
        at += size
    return hops + session.flush(), session


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("rate", [16_000, 22_050])
def test_every_hop_equals_the_batch_model_past_many_window_wraps(tmp_path, n_layers, rate):
    online = load_online(
        make_checkpoint(tmp_path / "m.safetensors", hop_frames=10, window=5, n_layers=n_layers)
    )
    signal = tone_mix(8.0, rate)[:, 0]
    hops, session = _stream(online, signal, rate, chunks=[1, 37, 160, 1000, 4410])
    reference = window_probs(online, resample(signal, rate))
    assert len(hops) == reference.shape[0] == 71  # 8 s, 0.1 s hops: 14 windows' worth of wraps
    got = torch.stack([h.probs for h in hops])
    assert (got - reference).abs().max() < 1e-5
    assert torch.equal(got.argmax(1), reference.argmax(1))
    assert [h.index for h in hops] == list(range(71))
    assert [h.warmup for h in hops] == [k < 4 for k in range(71)]
    assert hops[0].start_s == 0.0 and hops[0].end_s == pytest.approx(0.975)
    assert hops[10].start_s == pytest.approx(0.6) and hops[10].end_s == pytest.approx(1.975)
    assert session.stats.hops == 71 and session.stats.audio_s == pytest.approx(8.0)
    assert torch.allclose(session.stats.mean_probs(), reference.mean(0), atol=1e-5)


def test_waiting_for_the_full_window_gives_no_prediction_before_it(tmp_path):
    online = load_online(make_checkpoint(tmp_path / "m.safetensors", hop_frames=25, window=4))
    signal = tone_mix(3.0, 16_000)[:, 0]
    hops, session = _stream(online, signal, 16_000, chunks=[400], full_window_only=True)
    reference = window_probs(online, signal)
    assert [h.probs is None for h in hops] == [k < 3 for k in range(len(hops))]
    assert all(h.top(3) == [] for h in hops[:3])
    full = torch.stack([h.probs for h in hops[3:]])
    assert (full - reference[3:]).abs().max() < 1e-5
    assert session.stats.predicted_hops == len(hops) - 3


def test_top_k_is_sorted_and_latencies_are_recorded(tmp_path):
    online = load_online(make_checkpoint(tmp_path / "m.safetensors"))
    hops, session = _stream(online, tone_mix(2.0, 16_000)[:, 0], 16_000, chunks=[3200])
    top = hops[-1].top(5)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert sorted(i for i, _ in top) == list(range(len(LABELS)))
    assert abs(sum(p for _, p in top) - 1) < 1e-5
    summary = session.stats.latency_summary()
    assert 0 < summary["mean_ms"] <= summary["max_ms"] and summary["p95_ms"] <= summary["max_ms"]
    assert all(0 < h.step_ms <= h.latency_ms for h in hops)
    assert 0 < session.stats.real_time_factor < 1


def test_an_old_checkpoint_takes_its_front_end_from_the_run_config(tmp_path):
    import json

    from coaudio.models.checkpoint import load_checkpoint, save_checkpoint

    model, labels, _ = load_checkpoint(make_checkpoint(tmp_path / "m.safetensors"))
    run = tmp_path / "run"
    save_checkpoint(run / "best.safetensors", model, labels, {"epoch": 3})  # no "frontend"
    (run / "config.json").write_text(json.dumps({"recipe": {"data": {"token_hop_frames": 7}}}))
    assert load_online(run).frontend == FrontendConfig(hop_frames=7)
    with pytest.raises(FileNotFoundError, match="without best.safetensors"):
        load_online(tmp_path)


def test_drop_detector_reports_each_gap_once():
    rate, block = 16_000, 800  # 50 ms blocks
    detector = DropDetector(rate, tolerance_s=0.3)
    now, found = 100.0, []
    for i in range(40):  # 2 s on time, with jitter of +-20 ms
        now += 0.05 + (0.02 if i % 2 else -0.02)
        found.append(detector.update(block, now))
    now += 1.2  # the device delivers nothing for 1.2 s
    for _ in range(20):
        now += 0.05
        found.append(detector.update(block, now))
    gaps = [g for g in found if g > 0]
    assert len(gaps) == 1 and gaps[0] == pytest.approx(1.2, abs=0.05)
    assert detector.gaps[0][0] == pytest.approx(2.05, abs=0.01)  # stream time of the gap


def test_drop_detector_forgives_a_backlog_arriving_early():
    detector = DropDetector(16_000, tolerance_s=0.3)
    now = 0.0
    for _ in range(30):  # 3 s of audio arrive in 0.3 s (a backlog draining)...
        now += 0.01
        assert detector.update(1600, now) == 0.0
    for _ in range(20):  # ...then real time: no false gap while the credit is used up
        now += 0.1
        assert detector.update(1600, now) == 0.0
    now += 0.8  # then 0.1 s of audio arrives 0.9 s after the previous block: 0.7 s missing
    assert detector.update(1600, now) == pytest.approx(0.7, abs=0.01)
