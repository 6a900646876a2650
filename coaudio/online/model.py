"""A trained classifier plus the front-end settings it was trained with.

A checkpoint written by ``coaudio train`` carries its front end in ``info["frontend"]``
(hop between tokens, feature kind, VGGish files). Older checkpoints are completed from the
``config.json`` of the run folder they sit in.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from coaudio.features.logmel import HOP_SAMPLES, PATCH_FRAMES, SAMPLE_RATE, WINDOW_SAMPLES
from coaudio.models.classifier import AudioClassifier

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "best.safetensors"  # what a run folder is resolved to


@dataclass(frozen=True)
class Frontend:
    """How audio becomes the model's tokens."""

    hop_frames: int = 25  # 10 ms frames between tokens; each token is a 96-frame patch
    features: str = "logmel"  # "logmel": patches into the learned embedder; "vggish": embeddings
    vggish_weights: str = ""
    vggish_pca: str = ""

    @property
    def hop_s(self) -> float:
        return self.hop_frames * HOP_SAMPLES / SAMPLE_RATE

    def hop_end_s(self, hop: int) -> float:
        """Stream time at which hop ``hop``'s audio is complete (its last frame's last sample)."""
        return ((hop * self.hop_frames + PATCH_FRAMES - 1) * HOP_SAMPLES + WINDOW_SAMPLES) / SAMPLE_RATE

    @property
    def patch_s(self) -> float:
        """Audio one token needs: a whole patch of frames."""
        return self.hop_end_s(0)

    def hop_start_s(self, hop: int) -> float:
        return hop * self.hop_frames * HOP_SAMPLES / SAMPLE_RATE

    def window_start_s(self, hop: int, window: int) -> float:
        """Stream time where the prediction of hop ``hop`` starts: its oldest of <= ``window`` tokens."""
        return self.hop_start_s(max(0, hop - window + 1))

    @classmethod
    def from_recipe_data(cls, data: dict) -> "Frontend":
        return cls(hop_frames=int(data.get("token_hop_frames", 25)), features=data.get("features", "logmel"),
                   vggish_weights=data.get("vggish_weights", ""), vggish_pca=data.get("vggish_pca", ""))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class OnlineModel:
    """``model`` in eval mode, its ``labels``, its ``frontend`` and, for VGGish models, the
    ``embed`` function ``(P, 96, 64) -> (P, 128)`` that turns patches into its tokens."""

    model: AudioClassifier
    labels: list[str]
    frontend: Frontend
    embed: Callable[[Tensor], Tensor] | None = None
    source: str = ""  # the checkpoint file

    @property
    def window(self) -> int:
        return self.model.cfg.encoder.window

    def fingerprint(self) -> str:
        """Identity of weights + labels + front end: equal fingerprints give equal outputs."""
        import hashlib

        digest = hashlib.sha256(json.dumps([self.labels, self.frontend.to_dict()]).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its ``best.safetensors``)."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).is_file():
            raise FileNotFoundError(f"{path}: a folder without {CHECKPOINT_NAME} (not a finished coaudio run)")
        return path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def load_online(path: str | Path, map_location: str = "cpu") -> OnlineModel:
    """Load a checkpoint (file or run folder) ready for streaming."""
    from coaudio.models.checkpoint import load_checkpoint

    file = resolve_checkpoint(path)
    model, labels, info = load_checkpoint(file, map_location=map_location)
    frontend = _frontend(file, info)
    embed = None
    if frontend.features == "vggish":
        from coaudio.features.cache import vggish_embed

        embed = vggish_embed(frontend.vggish_weights, frontend.vggish_pca)
    if (model.cfg.inputs == "patches") != (frontend.features == "logmel"):
        raise ValueError(f"{file}: model inputs {model.cfg.inputs!r} do not match features {frontend.features!r}")
    return OnlineModel(model, labels, frontend, embed, str(file))


def _frontend(file: Path, info: dict) -> Frontend:
    if "frontend" in info:
        return Frontend(**info["frontend"])
    config = file.parent / "config.json"
    if config.is_file():
        return Frontend.from_recipe_data(json.loads(config.read_text())["recipe"]["data"])
    log.warning("%s has no front-end settings and no run config beside it; assuming %s", file, Frontend())
    return Frontend()


def probabilities(logits: Tensor) -> Tensor:
    """``(..., C)`` logits -> class probabilities (the batch and streaming paths share this)."""
    return torch.softmax(logits, dim=-1)
