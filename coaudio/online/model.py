"""A trained classifier plus the front-end settings it was trained with.

A checkpoint written by ``coaudio train`` carries its front end in ``info["frontend"]``: a
:class:`~coaudio.features.frontend.FrontendConfig`, loaded strictly (an unknown or missing key
is an error naming it; older spellings are migrated). Checkpoints older still are completed
from the ``config.json`` of the run folder they sit in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from coaudio.features.fixed import token_function
from coaudio.features.frontend import FrontendConfig
from coaudio.models.checkpoint import frontend_of
from coaudio.models.classifier import AudioClassifier
from coaudio.pretrained.frontends import resolve_frontend

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "best.safetensors"  # what a run folder is resolved to


@dataclass
class OnlineModel:
    """``model`` in eval mode, its ``labels``, its ``frontend`` and, for fixed-token front
    ends (melstats, VGGish), the ``embed`` function ``(P, 96, 64) -> (P, 128)`` that turns
    patches into its tokens."""

    model: AudioClassifier
    labels: list[str]
    frontend: FrontendConfig
    embed: Callable[[Tensor], Tensor] | None = None
    source: str = ""  # the checkpoint file

    @property
    def window(self) -> int:
        return self.model.cfg.encoder.window

    def fingerprint(self) -> str:
        """Identity of weights + labels + front end: equal fingerprints give equal outputs."""
        import hashlib

        digest = hashlib.sha256(json.dumps([self.labels, asdict(self.frontend)]).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its ``best.safetensors``)."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).is_file():
            raise FileNotFoundError(
                f"{path}: a folder without {CHECKPOINT_NAME} (not a finished coaudio run)"
            )
        return path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def load_online(path: str | Path, map_location: str = "cpu") -> OnlineModel:
    """Load a checkpoint (file or run folder) ready for streaming."""
    from coaudio.models.checkpoint import load_checkpoint

    file = resolve_checkpoint(path)
    model, labels, info = load_checkpoint(file, map_location=map_location)
    frontend = frontend_of(file, info)
    embed = token_function(resolve_frontend(frontend))  # a model not fetched: says what to run
    if model.cfg.inputs != frontend.model_inputs:
        raise ValueError(
            f"{file}: the model reads {model.cfg.inputs}, its {frontend.kind} front end gives "
            f"{frontend.model_inputs}"
        )
    return OnlineModel(model, labels, frontend, embed, str(file))


def probabilities(logits: Tensor) -> Tensor:
    """``(..., C)`` logits -> class probabilities (the batch and streaming paths share this)."""
    return torch.softmax(logits, dim=-1)
