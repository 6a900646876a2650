"""musicnn (MSD_musicnn, Pons & Serra 2019) in PyTorch, loaded from its TensorFlow weights.

The network of ``musicnn.models.build_musicnn`` with midend 64 and backend 200, for inference
(batch norm uses its moving statistics; dropout is the identity). Input: musicnn log-mel
frames ``(B, T, 96)`` from :mod:`coaudio.features.musicnn_mel`, T = 187 (3 s) as trained;
any T works, since only the global pooling fixes a size.

::

    mel (B,T,96) -> BN (one scalar) ---------------------------------------------+
      timbral:  conv 7x38, 7x67 (204 each, time padded 3+3)  -> ReLU -> BN -> max over freq
      temporal: conv 128x1, 64x1, 32x1 (51 each, TF 'same')  -> ReLU -> BN -> max over freq
      front F (B,561,T) = [timbral 408 | temporal 153]
      cnn1 = BN(ReLU(conv7(F)));  cnn2 = BN(ReLU(conv7(cnn1))) + cnn1;  cnn3 = ... + cnn2
      [F | cnn1 | cnn2 | cnn3] (B,753,T) -> max and mean over time, interleaved (B,1506)
      -> BN -> dense 200 -> ReLU -> BN = penultimate -> dense 50 = logits -> sigmoid = tags

Every convolution is conv -> ReLU -> BN (in that order), batch-norm epsilon is exactly 1e-3
(some moving variances of the pooled vector are ~1e-25), and the pooled vector interleaves
max and mean per feature (max_0, mean_0, max_1, ...), as TF's flatten of ``[max, mean]``.

Weights are keyed by their TF names (:data:`TENSOR_SHAPES`); TF conv kernels are
``(time, freq, in, out)`` and dense kernels ``(in, out)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coaudio.features.musicnn_mel import N_MELS

BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default, read from the .meta
TIMBRAL = ((7, 38), (7, 67))  # kernel (time, freq): int(0.4 * 96), int(0.7 * 96) mel bins
TIMBRAL_FILTERS = 204  # int(1.6 * 128)
TEMPORAL = (128, 64, 32)  # kernel lengths in frames, over one mel bin
TEMPORAL_FILTERS = 51  # int(1.6 * 32)
FRONT = len(TIMBRAL) * TIMBRAL_FILTERS + len(TEMPORAL) * TEMPORAL_FILTERS  # 561
MIDEND = 64
MIDEND_KERNEL = 7
POOL = FRONT + 3 * MIDEND  # 753
BACKEND = 200

# The 50 Last.fm tags of the Million Song Dataset, in musicnn's order (configuration.MSD_LABELS).
LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)  # fmt: skip

# Token layers and their widths: one vector per patch.
LAYERS = {
    "penultimate": BACKEND,
    "max_pool": POOL,
    "mean_pool": POOL,
    "pooled": 2 * POOL,  # interleaved max/mean, what the back end sees
    "tags": len(LABELS),
    "logits": len(LABELS),
}

# TF layer name -> (module in Musicnn, TF kernel shape), in the order TF created them.
_CONVS = {
    "conv2d": ("timbral.0", (*TIMBRAL[0], 1, TIMBRAL_FILTERS)),
    "conv2d_1": ("timbral.1", (*TIMBRAL[1], 1, TIMBRAL_FILTERS)),
    **{
        f"conv2d_{2 + i}": (f"temporal.{i}", (length, 1, 1, TEMPORAL_FILTERS))
        for i, length in enumerate(TEMPORAL)
    },
    "conv2d_5": ("midend.0", (MIDEND_KERNEL, FRONT, 1, MIDEND)),
    "conv2d_6": ("midend.1", (MIDEND_KERNEL, MIDEND, 1, MIDEND)),
    "conv2d_7": ("midend.2", (MIDEND_KERNEL, MIDEND, 1, MIDEND)),
    "dense": ("dense", (2 * POOL, BACKEND)),
    "dense_1": ("classifier", (BACKEND, len(LABELS))),
}
_BATCH_NORMS = {
    "batch_normalization": ("input_bn", 1),
    "batch_normalization_1": ("timbral_bn.0", TIMBRAL_FILTERS),
    "batch_normalization_2": ("timbral_bn.1", TIMBRAL_FILTERS),
    **{f"batch_normalization_{3 + i}": (f"temporal_bn.{i}", TEMPORAL_FILTERS) for i in range(3)},
    **{f"batch_normalization_{6 + i}": (f"midend_bn.{i}", MIDEND) for i in range(3)},
    "batch_normalization_9": ("pool_bn", 2 * POOL),
    "batch_normalization_10": ("dense_bn", BACKEND),
}
_BN_FIELDS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def _tensor_names() -> dict[str, tuple[str, tuple[int, ...]]]:
    """TF tensor name -> (torch state-dict key, TF shape) for the 64 model tensors."""
    names = {}
    for layer, (module, kernel) in _CONVS.items():
        names[f"{layer}/kernel"] = (f"{module}.weight", kernel)
        names[f"{layer}/bias"] = (f"{module}.bias", (kernel[-1],))
    for layer, (module, width) in _BATCH_NORMS.items():
        for tf_field, torch_field in _BN_FIELDS.items():
            names[f"{layer}/{tf_field}"] = (f"{module}.{torch_field}", (width,))
    return dict(sorted(names.items()))


_NAMES = _tensor_names()
TENSOR_SHAPES: dict[str, tuple[int, ...]] = {name: shape for name, (_, shape) in _NAMES.items()}


def _bn(width: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(width, eps=BN_EPSILON)


class Musicnn(nn.Module):
    """MSD_musicnn for inference. Call :func:`musicnn_from_tensors` or :func:`load_musicnn`
    for the pretrained weights; a bare ``Musicnn()`` has random ones."""

    def __init__(self) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPSILON)
        self.timbral = nn.ModuleList(nn.Conv2d(1, TIMBRAL_FILTERS, k) for k in TIMBRAL)
        self.timbral_bn = nn.ModuleList(_bn(TIMBRAL_FILTERS) for _ in TIMBRAL)
        self.temporal = nn.ModuleList(nn.Conv2d(1, TEMPORAL_FILTERS, (k, 1)) for k in TEMPORAL)
        self.temporal_bn = nn.ModuleList(_bn(TEMPORAL_FILTERS) for _ in TEMPORAL)
        widths = (FRONT, MIDEND, MIDEND)
        self.midend = nn.ModuleList(nn.Conv1d(w, MIDEND, MIDEND_KERNEL) for w in widths)
        self.midend_bn = nn.ModuleList(_bn(MIDEND) for _ in widths)
        self.pool_bn = _bn(2 * POOL)
        self.dense = nn.Linear(2 * POOL, BACKEND)
        self.dense_bn = _bn(BACKEND)
        self.classifier = nn.Linear(BACKEND, len(LABELS))

    def _front(self, mel: Tensor) -> Tensor:
        """``(B, T, 96)`` -> ``(B, 561, T)``: timbral then temporal features per frame."""
        x = self.input_bn(mel.unsqueeze(1))  # (B, 1, T, 96)
        branches = []
        padded = F.pad(x, (0, 0, 3, 3))  # the timbral convs are 'valid' on 3+3 padded frames
        for conv, bn in zip(self.timbral, self.timbral_bn):
            branches.append(_max_over_freq(bn, conv(padded)))  # (B, 204, T)
        for conv, bn in zip(self.temporal, self.temporal_bn):
            length = conv.kernel_size[0]  # TF 'same': the extra frame of an even kernel goes after
            same = F.pad(x, (0, 0, (length - 1) // 2, length // 2))
            branches.append(_max_over_freq(bn, conv(same)))  # (B, 51, T)
        return torch.cat(branches, dim=1)

    def _midend(self, front: Tensor) -> list[Tensor]:
        """``(B, 561, T)`` -> cnn1, cnn2, cnn3, each ``(B, 64, T)`` (the last two residual)."""
        half = MIDEND_KERNEL // 2
        out, x = [], front
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn)):
            y = bn(torch.relu(conv(F.pad(x, (half, half)))))
            x = y if i == 0 else y + x  # cnn2 and cnn3 add their input
            out.append(x)
        return out

    def forward(self, mel: Tensor) -> dict[str, Tensor]:
        """All outputs for log-mel patches ``mel`` ``(B, T, 96)``.

        Returns:
            ``logits``, ``tags`` (sigmoid): ``(B, 50)`` in :data:`LABELS` order;
            ``penultimate`` ``(B, 200)``; ``max_pool``, ``mean_pool`` ``(B, 753)``;
            ``pooled`` ``(B, 1506)`` (interleaved); per frame: ``timbral`` ``(B, T, 408)``,
            ``temporal`` ``(B, T, 153)``, ``cnn1``, ``cnn2``, ``cnn3`` ``(B, T, 64)``.
        """
        if mel.dim() != 3 or mel.shape[-1] != N_MELS:
            raise ValueError(f"musicnn expects log-mel patches (B, T, {N_MELS}), got {tuple(mel.shape)}")
        mel = mel.to(self.classifier.weight.dtype)
        front = self._front(mel)
        cnn = self._midend(front)
        features = torch.cat([front, *cnn], dim=1)  # (B, 753, T)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # (B, 1506) interleaved
        penultimate = self.dense_bn(torch.relu(self.dense(self.pool_bn(pooled))))
        logits = self.classifier(penultimate)
        split = len(TIMBRAL) * TIMBRAL_FILTERS
        return {
            "logits": logits,
            "tags": torch.sigmoid(logits),
            "penultimate": penultimate,
            "max_pool": max_pool,
            "mean_pool": mean_pool,
            "pooled": pooled,
            "timbral": front[:, :split].transpose(1, 2),
            "temporal": front[:, split:].transpose(1, 2),
            **{f"cnn{i + 1}": c.transpose(1, 2) for i, c in enumerate(cnn)},
        }

    @torch.no_grad()
    def tokens(self, mel: Tensor, layer: str = "penultimate") -> Tensor:
        """One vector per patch: ``(B, T, 96)`` -> ``(B, LAYERS[layer])``, without autograd."""
        if layer not in LAYERS:
            raise ValueError(f"unknown musicnn layer {layer!r}; choose one of {sorted(LAYERS)}")
        return self(mel)[layer]


def _max_over_freq(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """``(B, C, T, W)`` conv output -> ReLU -> BN per channel -> max over the W frequencies.

    In eval mode BN is a per-channel ``scale * x + shift`` and every rounding step is
    monotone, so the max of the normalised values is exactly the normalised max (the min
    where the scale is negative): normalising ``(B, C, T)`` instead of ``(B, C, T, W)``
    gives the same bits, and the forward pass is ~7 % faster.
    """
    if bn.training:  # batch statistics: no shortcut
        batch, channels, frames, width = x.shape
        normed = bn(torch.relu(x).reshape(batch, channels, frames * width))
        return normed.reshape(batch, channels, frames, width).amax(dim=3)
    negative = (bn.weight < 0).view(1, -1, 1)
    extreme = torch.where(negative, x.amin(dim=3), x.amax(dim=3))  # (B, C, T)
    return bn(torch.relu(extreme))


def _to_torch(value: Tensor | np.ndarray, target: Tensor) -> Tensor:
    """A TF-layout tensor in the layout of the torch parameter ``target``."""
    x = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    x = x.detach().to(torch.float32)
    if x.dim() == 4 and target.dim() == 4:  # conv2d kernel (kh, kw, in, out) -> (out, in, kh, kw)
        return x.permute(3, 2, 0, 1)
    if x.dim() == 4:  # a full-width conv2d as Conv1d: (k, width, 1, out) -> (out, width, k)
        return x[:, :, 0, :].permute(2, 1, 0)
    if x.dim() == 2:  # dense (in, out) -> Linear (out, in)
        return x.T
    return x


def musicnn_from_tensors(tensors: dict[str, Tensor | np.ndarray]) -> Musicnn:
    """A float32 :class:`Musicnn` in eval mode from the 64 tensors of :data:`TENSOR_SHAPES`,
    keyed by their TF names. Missing, extra and wrongly shaped tensors raise ValueError."""
    missing = sorted(set(TENSOR_SHAPES) - set(tensors))
    extra = sorted(set(tensors) - set(TENSOR_SHAPES))
    if missing or extra:
        problems = [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in extra[:3]]
        more = len(missing) + len(extra) - len(problems)
        raise ValueError(
            f"musicnn weights: {', '.join(problems)}{f' and {more} more' if more else ''} (not the "
            "64 tensors of the musicnn model: use what 'coaudio models fetch musicnn' installs)"
        )
    wrong = [
        f"{name}: {tuple(value.shape)} (expected {TENSOR_SHAPES[name]})"
        for name, value in tensors.items()
        if tuple(value.shape) != TENSOR_SHAPES[name]
    ]
    if wrong:
        raise ValueError("musicnn weights with wrong shapes: " + "; ".join(wrong))
    model = Musicnn()
    state = model.state_dict()
    for name, (key, _) in _NAMES.items():
        state[key] = _to_torch(tensors[name], state[key]).contiguous()
    model.load_state_dict(state)
    return model.eval()


def load_musicnn(path: str | Path) -> Musicnn:
    """:func:`musicnn_from_tensors` of a safetensors file keyed by TF names. A file that is
    not one raises ValueError saying so (FileNotFoundError when there is none)."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a musicnn safetensors weight file ({exc})") from None
    try:
        return musicnn_from_tensors(tensors)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
