"""A front end's pretrained weights, named or given as files, made concrete.

A recipe names weights by model (``weights = "musicnn"``) or by file (``weights = "/w.pth"``).
Two steps make that concrete:

* :func:`record_frontend`, when a run starts: names stay names (the run works on any machine
  that has fetched the model), files become absolute paths (it works from any directory), and
  the SHA-256 of every weight file is recorded (``weights_sha256``, ``pca_sha256``);
* :func:`resolve_frontend`, just before tokens are computed: names become the installed files
  of the model store, and a recorded SHA-256 must match what is there now, so tokens are never
  silently computed with other weights than the ones a model was trained on.

A model that is not fetched raises :class:`~coaudio.pretrained.store.ModelNotFetched`, whose
message says which ``coaudio models fetch`` to run.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from coaudio.config import ConfigError
from coaudio.digests import file_digest
from coaudio.features.frontend import PRETRAINED, FrontendConfig

ROLES = {"weights": "weights", "pca": "pca"}  # FrontendConfig field -> the store's file role


def is_model_name(value: str) -> bool:
    """Whether a ``weights``/``pca`` value names a model of the store rather than a file."""
    from coaudio.pretrained.registry import MODELS

    return value in MODELS


def record_frontend(frontend: FrontendConfig, models_dir: str | Path | None = None) -> FrontendConfig:
    """``frontend`` as a run records it: model names kept, files absolute, SHA-256s filled in
    (and checked against those recorded before, e.g. on resume)."""
    changes = {}
    for field, value, _, sha in _weight_files(frontend, models_dir):
        if not is_model_name(value):
            changes[field] = os.path.abspath(value)
        changes[f"{field}_sha256"] = sha
    return replace(frontend, **changes)


def resolve_frontend(frontend: FrontendConfig, models_dir: str | Path | None = None) -> FrontendConfig:
    """``frontend`` with model names replaced by the store's installed files, each checked
    against the SHA-256 the run recorded (when it recorded one)."""
    changes = {field: path for field, _, path, _ in _weight_files(frontend, models_dir)}
    return replace(frontend, **changes)


def _weight_files(frontend: FrontendConfig, models_dir):
    """``(field, value, file, sha256)`` for each weight file ``frontend`` names (a model of the
    store or a path), its SHA-256 checked against the one recorded, if any."""
    if frontend.kind not in PRETRAINED:
        return
    for field, role in ROLES.items():
        value = getattr(frontend, field)
        if not value:
            continue
        if is_model_name(value):
            from coaudio.pretrained.store import model_file, model_sha256

            path, sha = str(model_file(value, role, models_dir)), model_sha256(value, role, models_dir)
        elif Path(value).is_file():
            path, sha = value, file_digest(Path(value))
        else:
            raise FileNotFoundError(f"front-end {field} {value}: no such file")
        yield field, value, path, _checked_sha(frontend, field, sha)


def _checked_sha(frontend: FrontendConfig, field: str, now: str) -> str:
    recorded = getattr(frontend, f"{field}_sha256")
    if recorded and recorded != now:
        value = getattr(frontend, field)
        hint = f"'coaudio models fetch {value} --force'" if is_model_name(value) else "the original file"
        raise ConfigError(
            f"front-end {field} {value}: SHA-256 {now[:12]}... is not the {recorded[:12]}... this "
            f"model was trained with; its tokens would differ (restore {hint})"
        )
    return now
