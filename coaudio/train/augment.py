"""Training-time augmentation for small music sets: masking, gain/EQ, mixup.

Each one is off by default and set in a recipe's ``[train.augment]`` table:

* SpecAugment-style masking (Park et al., 2019): ``time_masks`` bands of up to
  ``time_mask_frames`` frames and ``freq_masks`` bands of up to ``freq_mask_bands`` mel bands,
  per patch, set to the patch's mean;
* ``gain_db`` / ``eq_db``: a random level change, and a random smooth tilt/curve over the mel
  bands, per clip and batch. Applied exactly in the log-mel domain: a patch is
  ``log(mel + 0.01)``, so scaling the mel energies by ``a`` gives ``log(a (e^x - 0.01) + 0.01)``;
* ``mixup`` (Zhang et al., 2018) with ``Beta(mixup, mixup)`` weights, on the embedded tokens
  (see :meth:`AudioClassifier.forward`), the loss mixed in the same proportion.

Every random draw comes from the epoch's generator, so a resumed run stays bit-exact.
Masking, gain and EQ change log-mel patches, so they apply to the learned front end only:
precomputed tokens are fixed, and mixup is what they can use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from coaudio.features.logmel import LOG_OFFSET, N_MELS, PATCH_FRAMES

MAX_DB = 40.0  # gain and EQ beyond this no longer model a recording's level


@dataclass(frozen=True)
class AugmentConfig:
    time_masks: int = 0  # SpecAugment time masks per patch
    time_mask_frames: int = 12  # widest time mask, in 10 ms frames
    freq_masks: int = 0  # SpecAugment frequency masks per patch
    freq_mask_bands: int = 8  # widest frequency mask, in mel bands
    gain_db: float = 0.0  # random level change per clip and batch, uniform in +-gain_db
    eq_db: float = 0.0  # random smooth EQ per clip and batch, up to +-eq_db at any band
    mixup: float = 0.0  # alpha of the Beta(alpha, alpha) mixing weights; 0 = off

    def __post_init__(self) -> None:
        limits = {  # the widest a mask can be: a patch's frames and bands; levels within reason
            "time_masks": 16,
            "time_mask_frames": PATCH_FRAMES,
            "freq_masks": 16,
            "freq_mask_bands": N_MELS,
            "gain_db": MAX_DB,
            "eq_db": MAX_DB,
            "mixup": 10.0,
        }
        for name, highest in limits.items():
            value = getattr(self, name)
            if not 0 <= value <= highest:  # also refuses NaN
                raise ValueError(f"{name} must be in [0, {highest}], got {value}")

    @property
    def changes_patches(self) -> bool:
        return bool(self.patch_settings())

    def patch_settings(self) -> list[str]:
        """The settings in use that change log-mel patches (all but mixup)."""
        names = ("time_masks", "freq_masks", "gain_db", "eq_db")
        return [f"train.augment.{n} = {getattr(self, n)}" for n in names if getattr(self, n)]


def augment_patches(patches: Tensor, owner: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> Tensor:
    """``(U, frames, bands)`` log-mel patches -> augmented copies; ``owner`` ``(U,)`` names each
    patch's clip, so the patches one clip contributes share its gain and EQ."""
    if not cfg.changes_patches:
        return patches
    out = patches.clone()
    if cfg.gain_db or cfg.eq_db:
        out = _level(out, owner, cfg, generator)
    for _ in range(cfg.time_masks):
        _mask(out, dim=1, widest=cfg.time_mask_frames, generator=generator)
    for _ in range(cfg.freq_masks):
        _mask(out, dim=2, widest=cfg.freq_mask_bands, generator=generator)
    return out


def _level(patches: Tensor, owner: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Scale each clip's mel energies by a gain and a smooth per-band curve, exactly."""
    clips, inverse = torch.unique(owner, return_inverse=True)
    bands = patches.shape[-1]
    gain = (torch.rand(len(clips), 1, generator=generator) * 2 - 1) * cfg.gain_db
    # a smooth curve: a random tilt plus one random bump, scaled to +-eq_db at most
    where = torch.linspace(-1, 1, bands)
    tilt = (torch.rand(len(clips), 1, generator=generator) * 2 - 1) * where
    centre = torch.rand(len(clips), 1, generator=generator) * 2 - 1
    height = torch.rand(len(clips), 1, generator=generator) * 2 - 1
    bump = height * torch.exp(-(((where - centre) / 0.3) ** 2))
    curve = (tilt + bump) / 2 * cfg.eq_db
    return scale_level(patches, (gain + curve)[inverse])


def scale_level(patches: Tensor, decibels: Tensor) -> Tensor:
    """``(U, frames, bands)`` log-mel patches as if the audio had been ``decibels`` ``(U, bands)``
    louder in each band: exact for VGGish log-mel, whose mel energies are magnitudes."""
    scale = (10.0 ** (decibels / 20.0)).unsqueeze(1)  # magnitudes: 20 dB per decade
    energy = (patches.exp() - LOG_OFFSET).clamp_min(0.0)
    return torch.log(scale * energy + LOG_OFFSET)


def _mask(patches: Tensor, dim: int, widest: int, generator: torch.Generator) -> None:
    """In place: one band of up to ``widest`` steps along ``dim`` per patch, set to its mean."""
    if widest <= 0:
        return
    count, size = patches.shape[0], patches.shape[dim]
    width = torch.randint(0, min(widest, size) + 1, (count,), generator=generator)
    first = (torch.rand(count, generator=generator) * (size - width + 1)).long()
    steps = torch.arange(size)
    hidden = (steps >= first[:, None]) & (steps < (first + width)[:, None])  # (U, size)
    hidden = hidden.unsqueeze(2) if dim == 1 else hidden.unsqueeze(1)
    mean = patches.mean(dim=(1, 2), keepdim=True)
    patches.copy_(torch.where(hidden, mean, patches))


def mixup_pairs(rows: int, alpha: float, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
    """``(partner (B,), weight (B,))`` for mixup, or None when it is off."""
    if alpha <= 0 or rows < 2:
        return None
    partner = torch.randperm(rows, generator=generator)
    # torch's Beta sampler takes no generator: seed a forked global RNG from ours instead, so
    # the draw is reproducible and the global RNG (dropout) is left as it was
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        weight = torch.distributions.Beta(alpha, alpha).sample((rows,))
    return partner, torch.maximum(weight, 1 - weight)  # each window keeps the larger share
