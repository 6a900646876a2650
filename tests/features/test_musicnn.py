"""musicnn in PyTorch: the network against TensorFlow's own outputs (tests/fixtures/
musicnn_reference.npz, made by tools/musicnn_reference.py), the front end against librosa's,
and the streaming front end equal to the batch one bit for bit for any chunking."""

from __future__ import annotations

import ast
import copy
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from coaudio.audio import resample
from coaudio.features.musicnn import (
    LABELS,
    LAYERS,
    TENSOR_SHAPES,
    Musicnn,
    _max_over_freq,
    load_musicnn,
    musicnn_from_tensors,
)
from coaudio.features.musicnn_mel import (
    N_MELS,
    PATCH_FRAMES,
    StreamingMusicnnMel,
    frame_count,
    init_musicnn_mel_state,
    init_musicnn_patch_state,
    musicnn_mel,
    musicnn_mel_step,
    musicnn_patch_step,
    musicnn_patches,
)
from coaudio.pretrained.tfbundle import read_bundle
from tests.downloads import musicnn_wheel

FIXTURE = Path(__file__).parent.parent / "fixtures" / "musicnn_reference.npz"
# Absolute tolerances against TF (float32). max_pool reaches 141 through the residual sums, and
# float32 rounding alone moves it by 1.2e-4 there (the float64 port differs from ours that much).
TOLERANCE = {"logits": 1e-4, "tags": 1e-5, "penultimate": 1e-4, "max_pool": 5e-4, "mean_pool": 1e-4}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def tensors(tmp_path_factory) -> dict[str, np.ndarray]:
    """The 64 model tensors of the real MSD_musicnn checkpoint, read from the wheel."""
    folder = tmp_path_factory.mktemp("wheel")
    with zipfile.ZipFile(musicnn_wheel()) as wheel:
        for suffix in (".index", ".data-00000-of-00001"):
            wheel.extract(f"musicnn/MSD_musicnn/{suffix}", folder)
    bundle = read_bundle(f"{folder}/musicnn/MSD_musicnn/")
    return {name: bundle[name] for name in TENSOR_SHAPES}


@pytest.fixture(scope="module")
def model(tensors) -> Musicnn:
    return musicnn_from_tensors(tensors)


def _patches(reference) -> torch.Tensor:
    """The ``(9, 187, 96)`` log-mel patches that were fed to TensorFlow."""
    cut = [
        reference[f"mel_{clip}"][start : start + PATCH_FRAMES]
        for clip, start in zip(reference["patch_clip"], reference["patch_start"])
    ]
    return torch.from_numpy(np.stack(cut))


def _signal(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tones = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t)
    return (tones + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


# ------------------------------------------------------------------------------ the network


def test_port_equals_tensorflow(model, reference):
    with torch.no_grad():
        out = model(_patches(reference))
    for key, tolerance in TOLERANCE.items():
        np.testing.assert_allclose(out[key].numpy(), reference[key], rtol=0, atol=tolerance, err_msg=key)


def test_float64_agrees_with_float32(model, reference):
    patches = _patches(reference)[::4]  # one patch of each clip
    with torch.no_grad():
        single, double = model(patches), copy.deepcopy(model).double()(patches.double())
    assert double["logits"].dtype == torch.float64
    for key, tolerance in TOLERANCE.items():
        np.testing.assert_allclose(double[key].numpy(), single[key].numpy(), rtol=0, atol=tolerance)
        np.testing.assert_allclose(double[key].numpy(), reference[key][::4], rtol=0, atol=tolerance)


def test_outputs_and_tokens(model, reference):
    patches = _patches(reference)[:2]
    with torch.no_grad():
        out = model(patches)
    frames = PATCH_FRAMES
    expected = {"timbral": (2, frames, 408), "temporal": (2, frames, 153), "cnn3": (2, frames, 64)}
    expected |= {layer: (2, width) for layer, width in LAYERS.items()}
    assert {k: tuple(out[k].shape) for k in expected} == expected
    assert torch.equal(out["tags"], torch.sigmoid(out["logits"]))
    interleaved = out["pooled"].reshape(2, -1, 2)
    assert torch.equal(interleaved[..., 0], out["max_pool"]) and torch.equal(
        interleaved[..., 1], out["mean_pool"]
    )
    assert torch.equal(model.tokens(patches), out["penultimate"])
    for layer, width in LAYERS.items():
        assert model.tokens(patches[:1], layer).shape == (1, width)
    assert not model.tokens(patches).requires_grad
    with pytest.raises(ValueError, match="unknown musicnn layer 'cnn9'"):
        model.tokens(patches, "cnn9")
    with pytest.raises(ValueError, match=r"\(B, T, 96\)"):
        model(patches[0])


def test_max_over_freq_shortcut_is_exact():
    """Normalising the per-channel max (min for negative scales) equals the max of the
    normalised values bit for bit, as the layer order conv -> ReLU -> BN -> max has it."""
    bn = torch.nn.BatchNorm1d(6, eps=1e-3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.7, 0.0, 2.0, -3.0, 0.1]))
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 2.0)
        x = torch.randn(2, 6, 50, 33)
        straight = bn(torch.relu(x).reshape(2, 6, -1)).reshape(2, 6, 50, 33).amax(dim=3)
        assert torch.equal(_max_over_freq(bn, x), straight)


def test_other_patch_lengths_work(model, reference):
    """Only the global pooling fixes a size: a 1 s patch gives tags too."""
    with torch.no_grad():
        out = model(_patches(reference)[:1, :62])
    assert out["tags"].shape == (1, 50) and torch.isfinite(out["tags"]).all()


def test_labels_are_the_wheels_msd_labels():
    with zipfile.ZipFile(musicnn_wheel()) as wheel:
        source = wheel.read("musicnn/configuration.py").decode()
    assigned = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and node.targets[0].id.endswith("_LABELS")
    }
    assert list(LABELS) == assigned["MSD_LABELS"] and len(LABELS) == 50


def test_loads_from_a_safetensors_file_keyed_by_tf_names(model, tensors, reference, tmp_path):
    from safetensors.numpy import save_file

    save_file(tensors, str(tmp_path / "musicnn.safetensors"))
    loaded = load_musicnn(tmp_path / "musicnn.safetensors")
    assert not loaded.training and loaded.classifier.weight.dtype == torch.float32
    patches = _patches(reference)[:1]
    assert torch.equal(loaded.tokens(patches, "logits"), model.tokens(patches, "logits"))


def test_weights_are_checked_strictly(tensors):
    assert len(TENSOR_SHAPES) == 64
    missing = {k: v for k, v in tensors.items() if k != "dense/bias"}
    with pytest.raises(ValueError, match=r"missing dense/bias \(not the 64 tensors"):
        musicnn_from_tensors(missing)
    with pytest.raises(ValueError, match=r"unexpected dense/kernel/Adam \(not the 64 tensors"):
        musicnn_from_tensors({**tensors, "dense/kernel/Adam": tensors["dense/kernel"]})
    wrong = {**tensors, "conv2d/kernel": np.zeros((7, 38, 1, 203), np.float32)}
    with pytest.raises(ValueError, match=r"conv2d/kernel: \(7, 38, 1, 203\) \(expected \(7, 38, 1, 204\)\)"):
        musicnn_from_tensors(wrong)
    as_torch = musicnn_from_tensors({k: torch.from_numpy(v).double() for k, v in tensors.items()})
    assert as_torch.dense.weight.dtype == torch.float32


# ----------------------------------------------------------------------------- the front end


def test_front_end_equals_musicnns_librosa_front_end(reference):
    """Frames not touched by librosa's right padding agree; a rare bin lands on the other side
    of a float16 rounding boundary (one float16 step, at most ~3e-4 after the log)."""
    for clip in range(len(reference["clip_names"])):
        audio = reference[f"audio_{clip}"].astype(np.float32)
        expected = reference[f"mel_{clip}"]
        ours = musicnn_mel(audio).numpy()
        assert ours.shape == (frame_count(len(audio)), N_MELS) == (len(expected) - 1, N_MELS)
        diff = np.abs(ours - expected[: len(ours)])
        assert (diff > 1e-4).sum() <= 3, clip  # measured: 0, 0 and 1 of 20,928 bins
        assert diff.max() < 5e-4, clip


def test_the_float16_trap_gives_no_inf(reference):
    mel16 = reference["mel16_2"]  # the loud clip's float16 mel power
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        with np.errstate(over="ignore"):
            assert np.isinf(np.log10(10000 * mel16 + 1)).any()  # what musicnn's code does now
    ours = musicnn_mel(reference["audio_2"].astype(np.float32))
    assert torch.isfinite(ours).all()
    assert torch.isfinite(musicnn_mel(1000 * _signal(0.5))).all()  # mel power past float16's max


def test_frame_counts_and_short_inputs():
    assert musicnn_mel(np.zeros(255, np.float32)).shape == (0, N_MELS)
    assert musicnn_mel(np.zeros(256, np.float32)).shape == (1, N_MELS)  # [-256, 256)
    assert musicnn_mel(np.zeros(511, np.float32)).shape == (1, N_MELS)
    assert musicnn_mel(np.zeros(512, np.float32)).shape == (2, N_MELS)
    assert musicnn_mel(np.zeros(30 * 16000, np.float32)).shape == (1875, N_MELS)
    assert torch.equal(musicnn_mel(np.zeros(1000, np.float32)), torch.zeros(3, N_MELS))  # log10(1)
    # 187 frames need 186 * 256 + 256 samples
    assert musicnn_patches(musicnn_mel(np.zeros(47871, np.float32))).shape == (0, PATCH_FRAMES, N_MELS)
    assert musicnn_patches(musicnn_mel(np.zeros(47872, np.float32))).shape == (1, PATCH_FRAMES, N_MELS)
    with pytest.raises(ValueError, match="mono"):
        musicnn_mel(np.zeros((2, 800), np.float32))
    with pytest.raises(ValueError, match="hop_frames"):
        musicnn_patches(torch.zeros(200, N_MELS), 0)


def test_patches_cut_every_hop():
    frames = torch.arange(300 * N_MELS, dtype=torch.float32).reshape(300, N_MELS)
    cut = musicnn_patches(frames, 50)
    assert cut.shape == (3, PATCH_FRAMES, N_MELS)  # starts 0, 50, 100
    assert torch.equal(cut[2], frames[100 : 100 + PATCH_FRAMES])


# ------------------------------------------------------------------------------- streaming

CHUNKS = [1, 255, 256, 257, 997, 16000, None]  # None = the whole signal at once


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("chunk", CHUNKS, ids=[str(c) for c in CHUNKS])
def test_streaming_frames_equal_batch_exactly(chunk, dtype):
    x = _signal(0.6 if chunk == 1 else 3.3)
    batch = musicnn_mel(x, dtype=dtype)
    size = chunk or len(x)
    state, got = init_musicnn_mel_state(), []
    for start in range(0, len(x), size):
        frames, state = musicnn_mel_step(x[start : start + size], state, dtype)
        got.append(frames)
    assert torch.cat(got).dtype == dtype
    assert torch.equal(torch.cat(got), batch)


def test_streaming_frames_equal_batch_for_random_chunkings():
    x = _signal(4.0, seed=3)
    batch = musicnn_mel(x)
    rng = np.random.default_rng(7)
    for _ in range(5):
        cuts = np.sort(rng.choice(np.arange(1, len(x)), size=rng.integers(1, 60), replace=False))
        state, got = init_musicnn_mel_state(), []
        for piece in np.split(x, cuts):
            frames, state = musicnn_mel_step(piece, state)
            got.append(frames)
        assert torch.equal(torch.cat(got), batch)


def test_a_step_leaves_its_input_state_alone():
    state = init_musicnn_mel_state()
    first, after = musicnn_mel_step(_signal(0.1), state)
    again, _ = musicnn_mel_step(_signal(0.1), state)
    assert torch.equal(first, again) and np.array_equal(state.samples, np.zeros(256, np.float32))
    assert len(after.samples) < 512 + 256


@pytest.mark.parametrize("hop", [187, 62, 31, 1, 200])
@pytest.mark.parametrize("chunk", [1, 7, 187, 300])
def test_streaming_patches_equal_batch_exactly(hop, chunk):
    frames = musicnn_mel(_signal(4.5))
    state, got = init_musicnn_patch_state(), []
    for start in range(0, frames.shape[0], chunk):
        new, state = musicnn_patch_step(frames[start : start + chunk], state, hop)
        got.append(new)
    assert torch.equal(torch.cat(got), musicnn_patches(frames, hop))
    assert state.frames.shape[0] < PATCH_FRAMES + max(hop, chunk)


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 8000])
@pytest.mark.parametrize("chunk", [1, 511, 4096])
def test_streaming_with_resampling_equals_batch_after_flush(rate, chunk):
    x = _signal(3.4 if chunk > 1 else 0.5, sr=rate, seed=rate)
    batch = musicnn_mel(resample(x, rate))
    stream = StreamingMusicnnMel(rate, hop_frames=40)
    frames, patches = [], []
    for start in range(0, len(x), chunk):
        f, p = stream.push(x[start : start + chunk])
        frames.append(f)
        patches.append(p)
    f, p = stream.flush()
    frames.append(f)
    patches.append(p)
    assert torch.equal(torch.cat(frames), batch)
    assert torch.equal(torch.cat(patches), musicnn_patches(batch, 40))


def test_streaming_object_checks_its_arguments_and_keeps_dtype():
    with pytest.raises(ValueError, match="sample rate"):
        StreamingMusicnnMel(0)
    with pytest.raises(ValueError, match="hop_frames"):
        StreamingMusicnnMel(16000, hop_frames=0)
    x = _signal(3.1)
    stream = StreamingMusicnnMel(dtype=torch.float64)
    frames, patches = stream.push(x)
    assert frames.dtype == patches.dtype == torch.float64
    assert torch.equal(frames, musicnn_mel(x, dtype=torch.float64))
    assert patches.shape == (1, PATCH_FRAMES, N_MELS)
