"""Patch embedders: the small learned one, and VGGish loaded from files in the public layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

from coaudio.features.embed import PatchEmbedder, VGGish, load_vggish


def test_learned_embedder_shape_and_budget():
    model = PatchEmbedder(d_out=128).eval()
    x = torch.randn(3, 96, 64)
    with FlopCounterMode(display=False) as counter:
        out = model(x[:1])
    assert model(x).shape == (3, 128) and out.shape == (1, 128)
    assert counter.get_total_flops() <= 5e6


def test_vggish_layout_matches_the_public_weight_files():
    keys = set(VGGish().state_dict())
    convs = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 11, 13) for p in ("weight", "bias")}
    fcs = {f"embeddings.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    assert keys == convs | fcs
    assert sum(p.numel() for p in VGGish().parameters()) == 72_141_184


def _random_vggish_file(tmp_path, suffix):
    reference = VGGish().eval()
    path = tmp_path / f"vggish{suffix}"
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return reference, path


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loading_a_file_in_the_public_layout_gives_the_same_network(tmp_path, suffix):
    reference, path = _random_vggish_file(tmp_path, suffix)
    rng = np.random.default_rng(0)
    pca_path = tmp_path / "pca.npz"
    vectors, means = rng.standard_normal((128, 128)), rng.standard_normal((128, 1))
    np.savez(pca_path, pca_eigen_vectors=vectors, pca_means=means)
    model = load_vggish(path, pca_path)
    x = torch.randn(2, 96, 64)
    with torch.no_grad():
        raw = model(x)
        assert torch.equal(raw, reference(x))
        pca = model.postprocess(raw, quantize=False).double().numpy()
        expected = (vectors @ (raw.double().numpy().T - means)).T  # the reference's formula
        np.testing.assert_allclose(pca, expected, rtol=1e-4, atol=1e-3)
        q = model.postprocess(raw)
    assert q.min() >= 0 and q.max() <= 255 and torch.equal(q, q.floor())


def test_nhwc_flatten_order():
    """The first fc layer must see (H, W, C)-ordered features, as TensorFlow flattens."""
    model = VGGish().eval()
    with torch.no_grad():
        for m in model.features:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
        model.features[13].bias[5] = 1.0  # only channel 5 is non-zero after the last conv
        first = model.embeddings[0]
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0, 5] = 1.0  # NHWC index of (h=0, w=0, c=5)
        first.weight[1, 5 * 24] = 1.0  # NCHW index of the same value
        h = model.embeddings[0](model.features(torch.zeros(1, 1, 96, 64)).permute(0, 2, 3, 1).flatten(1))
    assert h[0, 0] == 1.0 and h[0, 1] == 0.0


class Sneaky:  # a pickled object that is not plain tensors must never be loaded
    pass


def test_mismatched_and_unsafe_files_get_clear_errors(tmp_path):
    wrong = tmp_path / "other.safetensors"
    save_file({"features.0.weight": torch.zeros(8, 1, 3, 3)}, str(wrong))
    with pytest.raises(ValueError, match="not a VGGish weight file.*missing"):
        load_vggish(wrong)
    shapes = tmp_path / "shapes.safetensors"
    state = {k: v.contiguous() for k, v in VGGish().state_dict().items()}
    state["embeddings.4.weight"] = torch.zeros(10, 4096)
    save_file(state, str(shapes))
    with pytest.raises(ValueError, match=r"embeddings.4.weight \(10, 4096\)"):
        load_vggish(shapes)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"x": Sneaky()}, unsafe)
    with pytest.raises(ValueError, match="not a readable weight file"):
        load_vggish(unsafe)
    with pytest.raises(FileNotFoundError):
        load_vggish(tmp_path / "absent.pth")
