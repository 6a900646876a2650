"""Augmentation: exact level changes, masks where they should be, reproducible draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coaudio.config import from_dict
from coaudio.features.logmel import log_mel, patches
from coaudio.train.augment import AugmentConfig, augment_patches, mixup_pairs, scale_level
from coaudio.train.config import Recipe


def _patches(seconds: float = 3.0) -> tuple[np.ndarray, torch.Tensor]:
    t = np.arange(int(16_000 * seconds)) / 16_000
    rng = np.random.default_rng(0)
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    return audio, patches(log_mel(audio, dtype=torch.float64), 48)


def test_a_level_change_in_the_log_mel_domain_is_the_log_mel_of_louder_audio():
    audio, quiet = _patches()
    louder = patches(log_mel(audio * 10 ** (6 / 20), dtype=torch.float64), 48)
    got = scale_level(quiet, torch.full((quiet.shape[0], quiet.shape[2]), 6.0, dtype=torch.float64))
    torch.testing.assert_close(got, louder, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "dim, cfg",
    [
        (1, AugmentConfig(time_masks=1, time_mask_frames=10)),
        (2, AugmentConfig(freq_masks=1, freq_mask_bands=6)),
    ],
)
def test_a_mask_hides_one_band_with_the_patch_mean_and_nothing_else(dim, cfg):
    _, clean = _patches()
    clean = clean.float()
    owner = torch.zeros(clean.shape[0], dtype=torch.long)
    out = augment_patches(clean, owner, cfg, torch.Generator().manual_seed(0))
    assert out.shape == clean.shape and not torch.equal(out, clean)
    widest = 10 if dim == 1 else 6
    for p in range(clean.shape[0]):
        hidden = (out[p] != clean[p]).any(dim=2 - dim).nonzero().squeeze(1)  # the steps along dim
        if len(hidden):
            assert len(hidden) <= widest and hidden[-1] - hidden[0] == len(hidden) - 1  # one band
            band = out[p].index_select(dim - 1, hidden)
            torch.testing.assert_close(band, torch.full_like(band, float(clean[p].mean())))
    assert torch.equal(out, augment_patches(clean, owner, cfg, torch.Generator().manual_seed(0)))
    assert torch.equal(augment_patches(clean, owner, AugmentConfig(), torch.Generator()), clean)


def test_one_clip_shares_its_gain_and_eq():
    _, clean = _patches()
    owner = torch.tensor([0, 0, 1] + [1] * (clean.shape[0] - 3))
    out = augment_patches(
        clean, owner, AugmentConfig(gain_db=6.0, eq_db=6.0), torch.Generator().manual_seed(2)
    )
    energy = lambda x: (x.exp() - 0.01).clamp_min(1e-12)  # noqa: E731
    ratio = (energy(out) / energy(clean)).mean(dim=1)  # (U, bands): the scale each patch got
    torch.testing.assert_close(ratio[0], ratio[1], rtol=1e-3, atol=0)
    assert not torch.allclose(ratio[1], ratio[2], rtol=1e-3)


def test_mixup_pairs_are_reproducible_and_keep_the_larger_share():
    first = mixup_pairs(16, 0.4, torch.Generator().manual_seed(5))
    second = mixup_pairs(16, 0.4, torch.Generator().manual_seed(5))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert (first[1] >= 0.5).all() and (first[1] <= 1).all()
    assert mixup_pairs(16, 0.0, torch.Generator()) is None
    state = torch.get_rng_state()
    mixup_pairs(16, 0.4, torch.Generator())
    assert torch.equal(torch.get_rng_state(), state)  # dropout's RNG is left alone


def test_recipes_check_their_augmentation():
    with pytest.raises(ValueError, match=r"must be in \[0, 40.0\]"):
        AugmentConfig(gain_db=-1)
    data = {"data": {"frontend": {"kind": "vggish", "weights": "w.pth"}}, "model": {"token_dim": 128}}
    with pytest.raises(ValueError, match="time_masks = 2: masks, gain and EQ change log-mel patches"):
        from_dict(Recipe, {**data, "train": {"augment": {"time_masks": 2}}})
    assert from_dict(Recipe, {**data, "train": {"augment": {"mixup": 0.2}}}).train.augment.mixup == 0.2
