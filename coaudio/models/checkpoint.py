"""Checkpoints: one safetensors file, weights plus the model config, labels and run info.

The config, labels and info travel as JSON in the safetensors metadata, so a checkpoint
describes itself, loading never unpickles anything, and the file is replaced in one atomic
rename (an interrupted save leaves the previous checkpoint intact).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open

from coaudio import __version__
from coaudio.config import ConfigError, from_dict, to_dict
from coaudio.features.frontend import FrontendConfig, migrate, migrate_data
from coaudio.models.classifier import AudioClassifier, ModelConfig
from coaudio.safeio import save_safetensors_atomically

log = logging.getLogger(__name__)

FORMAT = "coaudio-checkpoint-1"


def save_checkpoint(
    path: str | Path, model: AudioClassifier, labels: list[str], info: dict | None = None
) -> None:
    """Write ``model`` (weights + config), its ``labels`` and JSON-able ``info`` to ``path``."""
    if len(labels) != model.cfg.n_classes:
        raise ValueError(f"{len(labels)} labels for a model with {model.cfg.n_classes} classes")
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "coaudio": __version__,
        "config": json.dumps(to_dict(model.cfg)),
        "labels": json.dumps(list(labels)),
        "info": json.dumps(info or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # any layout in
    save_safetensors_atomically(tensors, path, metadata)


def read_metadata(path: str | Path) -> tuple[ModelConfig, list[str], dict]:
    """The model config, labels and info of a checkpoint, without loading weights."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a coaudio checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a coaudio checkpoint (format {meta.get('format')!r})")
    config = from_dict(ModelConfig, json.loads(meta["config"]))
    return config, json.loads(meta["labels"]), json.loads(meta["info"])


def load_checkpoint(
    path: str | Path, expected: ModelConfig | None = None, map_location: str | torch.device = "cpu"
) -> tuple[AudioClassifier, list[str], dict]:
    """Rebuild the model of a checkpoint (eval mode) with its labels and info.

    ``expected``: refuse a checkpoint whose config differs, naming the differing settings.
    """
    from safetensors.torch import load_file

    config, labels, info = read_metadata(path)
    if expected is not None and expected != config:
        raise ConfigError(
            f"{path}: checkpoint is from another config ({differences(to_dict(config), to_dict(expected))})"
        )
    model = AudioClassifier(config)
    model.load_state_dict(load_file(str(path), device=str(map_location)), strict=True)
    return model.eval(), labels, info


def differences(
    saved: dict, wanted: dict, where: str = "", names: tuple[str, str] = ("checkpoint", "expected")
) -> str:
    """``key: <names[0]> a, <names[1]> b`` for every leaf that differs, "; "-joined."""
    out = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        name = f"{where}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            inner = differences(a, b, name + ".", names)
            out += [inner] if inner else []
        elif a != b:
            out.append(f"{name}: {names[0]} {a!r}, {names[1]} {b!r}")
    return "; ".join(out)


def frontend_of(file: Path, info: dict) -> FrontendConfig:
    """The front end a checkpoint was trained with (``info["frontend"]``, else the run's
    ``config.json`` beside it, else the default with a warning); loaded strictly, older spellings
    migrated, and a missing ``kind`` or ``hop_frames`` is an error, never a silent default.."""
    if "frontend" in info:
        saved = migrate(info["frontend"])
        missing = [key for key in ("kind", "hop_frames") if key not in saved]  # no default may stand in
        if missing:
            raise ConfigError(f"{file}: frontend.{missing[0]}: missing from the checkpoint's front end")
        return from_dict(FrontendConfig, saved, "frontend")
    config = file.parent / "config.json"
    if config.is_file():
        data = migrate_data(json.loads(config.read_text())["recipe"]["data"])
        return from_dict(FrontendConfig, data.get("frontend", {}), "frontend")
    assumed = FrontendConfig()
    log.warning(
        "%s has no front-end settings and no run config beside it; assuming %s", file, _in_words(assumed)
    )
    return assumed


def _in_words(frontend: FrontendConfig) -> str:
    """E.g. "the learned front end with 25-frame hops (0.25 s) and 96-frame patches"."""
    return (
        f"the {frontend.kind} front end with {frontend.hop_frames}-frame hops ({frontend.hop_s:g} s) "
        f"and {frontend.patch_frames}-frame patches"
    )
