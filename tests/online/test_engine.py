"""One engine, many streams: each stream gets exactly what a session of its own gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coaudio.online.engine import Engine
from coaudio.online.model import load_online
from coaudio.online.session import Session
from tests.online.helpers import make_checkpoint, tone_mix

RATES = [16_000, 22_050, 44_100, 8_000]


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    return load_online(
        make_checkpoint(
            tmp_path_factory.mktemp("engine") / "m.safetensors", hop_frames=20, window=6, n_layers=2
        )
    )


def _alone(online, audio, rate, full_window_only=False):
    session = Session(online, rate, full_window_only=full_window_only)
    hops = []
    rng = np.random.default_rng(1)
    at = 0
    while at < len(audio):
        size = int(rng.integers(1, 9000))
        hops += session.push(audio[at : at + size])
        at += size
    return hops + session.flush()


@pytest.mark.parametrize("full_window_only", [False, True])
def test_interleaved_streams_equal_separate_sessions(online, full_window_only):
    audio = [tone_mix(3.0 + i, rate, seed=i)[:, 0] for i, rate in enumerate(RATES)]
    expected = [_alone(online, a, r, full_window_only) for a, r in zip(audio, RATES)]
    engine = Engine(online, full_window_only=full_window_only)
    got: dict[int, list] = {i: [] for i in range(len(RATES))}
    rng = np.random.default_rng(7)
    positions = [0] * len(RATES)
    joins = [0, 0, 3, 6]  # streams 2 and 3 join later, at other phases
    round_ = 0
    while any(i in engine.streams or positions[i] < len(audio[i]) for i in range(len(RATES))):
        blocks = {}
        for i, rate in enumerate(RATES):
            if round_ == joins[i]:
                engine.open(i, rate)
            if i in engine.streams and positions[i] < len(audio[i]) and rng.random() < 0.8:
                size = int(rng.integers(1, 12_000))
                blocks[i] = audio[i][positions[i] : positions[i] + size]
                positions[i] += size
        for i, hops in engine.push_many(blocks).items():
            got[i] += hops
        for i in list(engine.streams):  # a stream leaves as soon as its audio is used up
            if positions[i] >= len(audio[i]):
                got[i] += engine.close(i)
        round_ += 1
    for i in range(len(RATES)):
        assert len(got[i]) == len(expected[i]) > 10
        for a, b in zip(got[i], expected[i]):
            assert (a.index, a.start_s, a.end_s, a.warmup) == (b.index, b.start_s, b.end_s, b.warmup)
            if b.probs is None:
                assert a.probs is None
                continue
            torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-5)
            assert a.top(1)[0][0] == b.top(1)[0][0]


def test_streams_are_named_and_checked(online):
    engine = Engine(online)
    engine.open("a", 16_000)
    with pytest.raises(ValueError, match="already open"):
        engine.open("a", 16_000)
    with pytest.raises(KeyError, match="not open"):
        engine.push("b", np.zeros(10, dtype=np.float32))
    assert engine.push("a", np.zeros(100, dtype=np.float32)) == []
    engine.close("a")
    assert engine.streams == []


def test_kept_frames_equal_the_offline_log_mel(online):
    from coaudio.features.logmel import log_mel

    audio = tone_mix(4.0, 16_000, seed=3)[:, 0]
    engine = Engine(online, keep_frames=True)
    engine.open("a", 16_000)
    taken = []
    for at in range(0, len(audio), 3_333):
        engine.push("a", audio[at : at + 3_333])
        taken.append(engine.take_frames("a"))
    assert engine.take_frames("a").shape == (0, 64)  # taken once only
    assert torch.equal(torch.cat(taken), log_mel(audio))
    assert Engine(online).keep_frames is False


def test_many_streams_pushed_together_keep_their_own_frames_bit_for_bit(online):
    """push_many batches every stream's log-mel: each stream's frames are still exactly those
    of a streaming log-mel of its own, whatever else was pushed with them."""
    from coaudio.features.stream import StreamingLogMel

    rates = [RATES[i % len(RATES)] for i in range(30)]
    audio = [tone_mix(0.5 + 0.1 * i, rate, seed=i)[:, 0] for i, rate in enumerate(rates)]
    engine = Engine(online, keep_frames=True)
    alone = [StreamingLogMel(rate, hop_frames=20) for rate in rates]
    for i, rate in enumerate(rates):
        engine.open(i, rate)
    rng = np.random.default_rng(3)
    at = [0] * len(rates)
    while any(a < len(x) for a, x in zip(at, audio)):
        blocks = {}
        for i in range(len(rates)):
            size = int(rng.integers(0, 5_000))
            blocks[i] = audio[i][at[i] : at[i] + size]
            at[i] += size
        engine.push_many(blocks)
        for i, block in blocks.items():
            assert torch.equal(engine.take_frames(i), alone[i].push(block)[0])
    for i in range(len(rates)):
        engine.close(i)
