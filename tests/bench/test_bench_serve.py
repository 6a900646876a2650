"""``coaudio bench serve``: the regular engines give the continual engine's hops, and the
command runs end to end on tiny sizes (a real server, real clients, loopback only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coaudio.online.engine import Engine
from coaudio.online.model import load_online
from coaudio.serve.regular import RegularEngine, make_engine
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


@pytest.mark.parametrize("kind", ["regular", "regular-cached"])
def test_regular_engines_give_the_continual_engines_hops(online, kind):
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
