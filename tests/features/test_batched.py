"""Many streams' log-mels as one batch: every stream gets the bits of its own push, whatever
else is in the batch; the sparse projection has the bits of the per-tap loop it replaced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coaudio.features import logmel
from coaudio.features.logmel import band_taps, log_mel, log_mel_many, project_bands
from coaudio.features.musicnn_mel import StreamingMusicnnMel, mel_filters, musicnn_mel
from coaudio.features.stream import StreamingLogMel, push_many


def _signal(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tones = 0.3 * np.sin(2 * np.pi * (300 + 40 * seed) * t) + 0.1 * np.sin(2 * np.pi * 2500 * t)
    return (tones + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _per_tap_loop(spectrum: torch.Tensor, filters: np.ndarray) -> torch.Tensor:
    """The previous projection: for each tap index w, one addcmul over all bands, a band
    narrower than w taking bin 0 with weight 0."""
    rows = [np.nonzero(row)[0] for row in filters]
    width = max(len(r) for r in rows)
    index = torch.zeros(len(rows), width, dtype=torch.int64)
    weight = torch.zeros(len(rows), width, dtype=spectrum.dtype)
    for band, bins in enumerate(rows):
        index[band, : len(bins)] = torch.from_numpy(bins)
        weight[band, : len(bins)] = torch.from_numpy(filters[band, bins]).to(spectrum.dtype)
    mel = torch.zeros(spectrum.shape[0], len(rows), dtype=spectrum.dtype)
    for w in range(width):
        mel = torch.addcmul(mel, spectrum.index_select(1, index[:, w]), weight[:, w])
    return mel


@pytest.mark.parametrize("recipe", ["vggish", "musicnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_sparse_projection_has_the_bits_of_the_per_tap_loop(recipe, dtype):
    filters = logmel.mel_matrix().T if recipe == "vggish" else mel_filters()
    taps = band_taps(filters)
    taps = taps._replace(weights=tuple(w.to(dtype) for w in taps.weights))
    rng = np.random.default_rng(0)
    # magnitudes over many decades, as loud and quiet audio give
    spectrum = torch.from_numpy(10.0 ** rng.uniform(-6, 3, size=(3000, filters.shape[1]))).to(dtype)
    got = project_bands(spectrum[:, taps.low : taps.high], taps)
    assert torch.equal(got, _per_tap_loop(spectrum, filters))


def test_band_taps_need_contiguous_bands():
    filters = np.zeros((2, 10), dtype=np.float32)
    filters[0, [2, 3]] = 1.0
    filters[1, [4, 6]] = 1.0  # a gap: not a triangle
    with pytest.raises(ValueError, match="contiguous"):
        band_taps(filters)


def test_magnitudes_have_the_bits_of_abs():
    spectrum = torch.randn(5000, 257, dtype=torch.complex64) * 10.0 ** torch.empty(5000, 1).uniform_(-5, 3)
    assert torch.equal(logmel.magnitudes(spectrum, 3, 250), spectrum.abs()[:, 3:250])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_log_mel_many_equals_log_mel_of_each(dtype):
    rng = np.random.default_rng(1)
    lengths = [0, 399, 400, 401, 560, 16000, 33333] + list(rng.integers(1, 20000, size=20))
    pieces = [_signal(n / 16000, 16000, seed=i) for i, n in enumerate(lengths)]
    for order in (pieces, pieces[::-1]):  # each piece at another place in the batch
        for piece, got in zip(order, log_mel_many([torch.from_numpy(p) for p in order], dtype)):
            assert got.dtype == dtype and torch.equal(got, log_mel(piece, dtype))
    assert log_mel_many([], dtype) == []


@pytest.mark.parametrize("recipe", ["vggish", "musicnn"])
def test_long_signals_pass_in_blocks_with_the_bits_of_streaming(recipe, monkeypatch):
    """40 s: several FFT-to-log blocks offline; one block per push when streamed; any block size."""
    offline, streaming = (
        (log_mel, StreamingLogMel) if recipe == "vggish" else (musicnn_mel, StreamingMusicnnMel)
    )
    x = _signal(40.0, 16_000, seed=2)
    whole = offline(x)
    assert whole.shape[0] > 2 * logmel.BLOCK_FRAMES
    stream = streaming()
    pieces = [stream.push(x[at : at + 4000])[0] for at in range(0, len(x), 4000)]
    assert torch.equal(torch.cat(pieces), whole)
    monkeypatch.setattr(logmel, "BLOCK_FRAMES", 7)
    assert torch.equal(offline(x), whole)


def _extractors(rng) -> list[StreamingLogMel]:
    """VGGish and musicnn, float32 and float64, 16 kHz and resampled, at several patch hops."""
    made = []
    for i in range(24):
        kind = StreamingMusicnnMel if i % 3 == 2 else StreamingLogMel
        rate = [16_000, 22_050, 44_100, 8_000, 16_000][i % 5]
        dtype = torch.float64 if i % 7 == 3 else torch.float32
        made.append(kind(rate, hop_frames=int(rng.integers(1, 120)), dtype=dtype))
    return made


def test_push_many_gives_every_extractor_what_its_own_push_gives():
    rng = np.random.default_rng(5)
    batched, alone = _extractors(np.random.default_rng(9)), _extractors(np.random.default_rng(9))
    audio = [_signal(float(rng.uniform(0.2, 3.0)), e.sample_rate, seed=i) for i, e in enumerate(batched)]
    at = [0] * len(audio)
    while any(a < len(x) for a, x in zip(at, audio)):
        # a random subset of the streams pushes a random amount, an empty chunk now and then
        chosen = [i for i in range(len(audio)) if at[i] < len(audio[i]) and rng.random() < 0.7]
        chunks = []
        for i in chosen:
            size = int(rng.choice([0, 1, 160, int(rng.integers(1, 12_000))]))
            chunks.append(audio[i][at[i] : at[i] + size])
            at[i] += size
        got = push_many([batched[i] for i in chosen], chunks)
        for i, chunk, (frames, patches) in zip(chosen, chunks, got):
            own_frames, own_patches = alone[i].push(chunk)
            assert frames.dtype == own_frames.dtype == batched[i].dtype
            assert torch.equal(frames, own_frames) and torch.equal(patches, own_patches)
    for b, a in zip(batched, alone):
        assert all(torch.equal(x, y) for x, y in zip(b.flush(), a.flush()))


def test_push_many_checks_its_arguments():
    first, second = StreamingLogMel(), StreamingLogMel()
    block = np.zeros(1000, dtype=np.float32)
    with pytest.raises(ValueError, match="2 extractors but 1 chunks"):
        push_many([first, second], [block])
    with pytest.raises(ValueError, match="appears twice"):
        push_many([first, first], [block, block])
    assert push_many([], []) == []
