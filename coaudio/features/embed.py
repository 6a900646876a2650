"""Patch embedders: one ``(96, 64)`` log-mel patch -> one token.

* :class:`PatchEmbedder`: a small CNN (< 5 MFLOPs per patch) trained end to end with the
  transformer; the default.
* :class:`VGGish`: the AudioSet VGGish network, loadable from the public weight files
  (``load_vggish``), with the optional PCA + 8-bit quantisation postprocessing.

VGGish weights cannot be downloaded by coaudio. The official files are
``vggish-10086976.pth`` + ``vggish_pca_params-970ea276.pth`` (the torchvggish release; keys
``features.*`` / ``embeddings.*``) or TensorFlow's ``vggish_model.ckpt`` +
``vggish_pca_params.npz`` (convert the checkpoint to the same keys first). Pass local paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from coaudio.features.logmel import N_MELS, PATCH_FRAMES

QUANTIZE_RANGE = 2.0  # postprocessed embeddings are clipped to [-2, 2] then mapped to 0..255


class PatchEmbedder(nn.Module):
    """Four stride-2 conv blocks and a linear map: ``(B, 96, 64)`` -> ``(B, d_out)``.

    About 3.3 MFLOPs per patch (1.6 M multiply-accumulates), so the front end stays far
    below the cost of real time on one core.
    """

    def __init__(self, d_out: int = 128, width: int = 8) -> None:
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        blocks = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            # GroupNorm normalises each patch on its own: no batch statistics, so training on a
            # batch split across processes computes what one process on the whole batch does,
            # and inference never depends on running averages.
            blocks += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(4, c_out),
                nn.ReLU(),
            ]
        self.convs = nn.Sequential(*blocks)
        # 96 x 64 halves four times -> 6 x 4
        self.proj = nn.Linear(chans[-1] * (PATCH_FRAMES // 16) * (N_MELS // 16), d_out)

    def forward(self, patches: Tensor) -> Tensor:
        """``(B, PATCH_FRAMES, N_MELS)`` log-mel patches -> ``(B, d_out)`` tokens."""
        x = patches.unsqueeze(1)
        if torch.is_grad_enabled():
            x = self.convs(x)
        else:  # inference: each ReLU in place on its norm's fresh output, the same bits; 25%
            # less time per patch than a ReLU writing a new tensor (a server's embedder batches)
            for conv, norm, _ in zip(*[iter(self.convs)] * 3):
                x = torch.relu_(norm(conv(x)))
        return self.proj(x.flatten(1))


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class VGGish(nn.Module):
    """VGGish: ``(B, 96, 64)`` log-mel patches -> ``(B, 128)`` embeddings.

    Module indices follow the public torchvggish layout, so its state dict loads as is:
    ``features.{0,3,6,8,11,13}`` are the convolutions, ``embeddings.{0,2,4}`` the fully
    connected layers. The output is the pre-activation fc2 layer, as in current TensorFlow
    VGGish (torchvggish adds a final ReLU; apply ``relu`` yourself to reproduce it).
    """

    def __init__(self) -> None:
        super().__init__()
        pool = lambda: nn.MaxPool2d(2, 2)  # noqa: E731
        self.features = nn.Sequential(
            _conv(1, 64),
            nn.ReLU(),
            pool(),
            _conv(64, 128),
            nn.ReLU(),
            pool(),
            _conv(128, 256),
            nn.ReLU(),
            _conv(256, 256),
            nn.ReLU(),
            pool(),
            _conv(256, 512),
            nn.ReLU(),
            _conv(512, 512),
            nn.ReLU(),
            pool(),
        )
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, 128),
        )
        self.register_buffer("pca_eigen_vectors", torch.zeros(0, 128), persistent=False)
        self.register_buffer("pca_means", torch.zeros(0), persistent=False)

    def forward(self, patches: Tensor) -> Tensor:
        x = self.features(patches.unsqueeze(1))  # (B, 512, 6, 4)
        # TensorFlow flattens in NHWC order; the fc weights expect that order.
        return self.embeddings(x.permute(0, 2, 3, 1).flatten(1))

    @property
    def has_pca(self) -> bool:
        return self.pca_eigen_vectors.numel() > 0

    def postprocess(self, embeddings: Tensor, quantize: bool = True) -> Tensor:
        """PCA (with whitening) then, optionally, clip to [-2, 2] and quantise to 0..255
        (truncating, as the reference does). ``(B, 128)`` -> ``(B, 128)`` float."""
        if not self.has_pca:
            raise ValueError("no PCA parameters loaded: pass pca_path to load_vggish")
        pca = (embeddings - self.pca_means) @ self.pca_eigen_vectors.T
        if not quantize:
            return pca
        clipped = pca.clamp(-QUANTIZE_RANGE, QUANTIZE_RANGE)
        return torch.floor((clipped + QUANTIZE_RANGE) * (255.0 / (2 * QUANTIZE_RANGE)))


def _read_tensors(path: Path) -> dict[str, Tensor]:
    """Tensors from .safetensors, .npz (no pickles) or .pth/.pt (torch's weights-only loader,
    which refuses arbitrary objects)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: torch.from_numpy(data[k]) for k in data.files}
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # every reader has its own error types
        raise ValueError(f"{path}: not a readable weight file ({exc})") from None
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"{path}: expected a mapping of names to tensors")
    return loaded


def load_vggish(path: str | Path, pca_path: str | Path | None = None) -> VGGish:
    """VGGish with weights from ``path`` (and PCA parameters from ``pca_path``), eval mode."""
    model = VGGish()
    state = _read_tensors(Path(path))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        problems = [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
        raise ValueError(f"{path}: not a VGGish weight file ({'; '.join(problems + wrong[:3])})")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    if pca_path is not None:
        pca = _read_tensors(Path(pca_path))
        if "pca_eigen_vectors" not in pca or "pca_means" not in pca:
            raise ValueError(f"{pca_path}: expected keys pca_eigen_vectors and pca_means")
        vectors, means = pca["pca_eigen_vectors"].float(), pca["pca_means"].float().reshape(-1)
        if vectors.shape != (128, 128) or means.shape != (128,):
            raise ValueError(
                f"{pca_path}: expected (128, 128) vectors and 128 means, got "
                f"{tuple(vectors.shape)} and {tuple(means.shape)}"
            )
        model.pca_eigen_vectors, model.pca_means = vectors, means
    return model.eval()
