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
    if frontend.kind not in PRETRAINED:
        return frontend
    changes = {}
    for field, role in ROLES.items():
        value = getattr(frontend, field)
        if not value:
            continue
        if not is_model_name(value):
            value = changes[field] = os.path.abspath(value)
        changes[f"{field}_sha256"] = _checked_sha(frontend, field, _sha_now(value, role, models_dir))
    return replace(frontend, **changes)


def resolve_frontend(frontend: FrontendConfig, models_dir: str | Path | None = None) -> FrontendConfig:
    """``frontend`` with model names replaced by the store's installed files, each checked
    against the SHA-256 the run recorded (when it recorded one)."""
    if frontend.kind not in PRETRAINED:
        return frontend
    changes = {}
    for field, role in ROLES.items():
        value = getattr(frontend, field)
        if not value:
            continue
        if is_model_name(value):
            from coaudio.pretrained.store import model_file

            changes[field] = str(model_file(value, role, models_dir))
        elif not Path(value).is_file():
            raise FileNotFoundError(f"front-end {field} {value}: no such file")
        if getattr(frontend, f"{field}_sha256"):
            _checked_sha(frontend, field, _sha_now(value, role, models_dir))
    return replace(frontend, **changes)


def _sha_now(value: str, role: str, models_dir) -> str:
    if is_model_name(value):
        from coaudio.pretrained.store import model_sha256

        return model_sha256(value, role, models_dir)
    if not Path(value).is_file():
        raise FileNotFoundError(f"front-end weight file {value}: no such file")
    return file_digest(Path(value))


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
