"""Front ends whose tokens are fixed functions of a log-mel patch: computed once, never trained.

* ``melstats``: the mean and standard deviation over time of each of the 64 mel bands of a
  0.96 s patch (128 numbers): the classic "MFCC mean/std" summary, but per token, so the
  transformer sees how it changes through the clip. No weights, nothing to download, and an
  epoch on these tokens only runs the transformer.
* ``vggish``: the pretrained VGGish network (:mod:`coaudio.features.embed`);
* ``musicnn``: the pretrained MSD musicnn network (:mod:`coaudio.features.musicnn`) on its own
  log-mel patches.

:func:`token_function` is the one place that maps a front end to the function that turns
streamed patches into its tokens, so training, evaluation and streaming cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from coaudio.features.logmel import N_MELS

STATS_DIM = 2 * N_MELS


def patch_stats(patches: Tensor) -> Tensor:
    """``(P, frames, 64)`` log-mel patches -> ``(P, 128)``: per band, mean then std over time."""
    std, mean = torch.std_mean(patches, dim=1, correction=0)
    return torch.cat([mean, std], dim=-1)


def token_function(frontend) -> Callable[[Tensor], Tensor] | None:
    """``(P, patch_frames, n_mels) patches -> (P, token_dim)`` for a front end with fixed
    tokens, or None for the learned one (the model embeds its patches itself). The pretrained
    kinds need their ``weights`` as files (resolve model names first:
    :func:`coaudio.pretrained.frontends.resolve_frontend`)."""
    if frontend.kind == "melstats":
        return patch_stats
    if frontend.kind == "vggish":
        from coaudio.features.cache import vggish_embed

        return vggish_embed(frontend.weights, frontend.pca)
    if frontend.kind == "musicnn":
        from coaudio.features.cache import musicnn_embed

        return musicnn_embed(frontend.weights, frontend.layer)
    return None
