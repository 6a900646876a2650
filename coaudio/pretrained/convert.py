"""Turning downloaded weight files into the safetensors files the store installs.

No pickle is ever used at run time: the torchvggish ``.pth`` files are read once here with
torch's weights-only loader (which refuses anything but tensors, numpy arrays and plain
containers), and musicnn's TensorFlow checkpoint is read from the wheel with
:mod:`coaudio.pretrained.tfbundle`. Every converter writes its ``spec.outputs`` into ``out``.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from coaudio.pretrained.registry import ModelSpec
from coaudio.pretrained.sources import Fetched, FetchError

log = logging.getLogger(__name__)

PCA_KEYS = ("pca_eigen_vectors", "pca_means")
EMBEDDING_SIZE = 128
MUSICNN_MODEL = "MSD_musicnn"


class ConvertError(FetchError):
    """A verified source file that is not what the model needs; the message names it."""


def _why(exc: Exception) -> str:
    """One short line out of a loader's (often long, multi-line) error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    # torch's weights-only refusal: the line naming what the file would have run or built
    line = next((x for x in lines if "GLOBAL" in x), None) or next(
        (x for x in lines if "error:" in x), lines[0]
    )
    return line.removeprefix("WeightsUnpickler error: ")[:200]


def _save(tensors: dict, path: Path, metadata: dict[str, str], framework: str = "torch") -> None:
    """safetensors' ``save_file``, then its JSON header rewritten with sorted keys: safetensors
    writes the metadata in hash-map order, which changes from run to run, and the installed
    file's SHA-256 is what a checkpoint records as its front end's weights. The same tensors
    must therefore always give the same bytes."""
    import json
    import struct

    if framework == "torch":
        from safetensors.torch import save_file
    else:
        from safetensors.numpy import save_file
    save_file(tensors, str(path), metadata=metadata)
    with open(path, "r+b") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(canonical) > length:  # never: the same JSON, compact, only reordered
            raise ConvertError(f"{path.name}: could not write a canonical safetensors header")
        f.seek(8)
        f.write(canonical + b" " * (length - len(canonical)))  # the format pads headers with spaces


def _metadata(spec: ModelSpec, fetched: Fetched, model: str) -> dict[str, str]:
    return {
        "model": model,
        "licence": spec.licence,
        "source": fetched.file.name,
        "source_sha256": fetched.sha256,
        "converted_by": "coaudio",
    }


# ---------------------------------------------------------------------------- VGGish


def _torch_load(path: Path, what: str):
    """A torch file read with the weights-only loader; numpy arrays are allowed (the PCA file
    holds them), under their numpy 1 and numpy 2 module names."""
    import torch

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed = [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ] + [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64)]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is not usable
        raise ConvertError(f"{path.name}: not a readable {what} ({_why(exc)})") from None


def _as_tensor(value, name: str, path: Path):
    import torch

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.array(value))
    if not isinstance(value, torch.Tensor):
        raise ConvertError(f"{path.name}: {name} is a {type(value).__name__}, not an array")
    return value.float().contiguous()


def read_vggish_weights(path: Path) -> dict:
    """torchvggish's weight file (a state dict of tensors) -> VGGish's float32 tensors."""
    import torch

    from coaudio.features.embed import VGGish

    state = _torch_load(path, "VGGish weight file")
    if not isinstance(state, dict):
        raise ConvertError(f"{path.name}: expected a state dict, got a {type(state).__name__}")
    with torch.device("meta"):  # shapes only: no 289 MB allocated to learn them
        expected = VGGish().state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    if problems:
        raise ConvertError(f"{path.name}: not a VGGish weight file ({'; '.join(problems[:3])})")
    extra = sorted(set(state) - set(expected))
    if extra:
        log.info("%s: ignoring %d entries VGGish does not use (%s...)", path.name, len(extra), extra[0])
    return {k: _as_tensor(state[k], k, path) for k in expected}


def read_vggish_pca(path: Path) -> dict:
    """torchvggish's PCA file -> ``pca_eigen_vectors`` (128, 128) and ``pca_means`` (128,),
    float32. The file holds numpy arrays or tensors; the means may be stored as (128, 1)."""
    params = _torch_load(path, "VGGish PCA file")
    if not isinstance(params, dict) or not all(k in params for k in PCA_KEYS):
        raise ConvertError(f"{path.name}: expected the keys {' and '.join(PCA_KEYS)}")
    vectors = _as_tensor(params["pca_eigen_vectors"], "pca_eigen_vectors", path)
    means = _as_tensor(params["pca_means"], "pca_means", path).reshape(-1).contiguous()
    if tuple(vectors.shape) != (EMBEDDING_SIZE, EMBEDDING_SIZE) or tuple(means.shape) != (EMBEDDING_SIZE,):
        raise ConvertError(
            f"{path.name}: expected (128, 128) eigenvectors and 128 means, "
            f"got {tuple(vectors.shape)} and {tuple(means.shape)}"
        )
    return {"pca_eigen_vectors": vectors, "pca_means": means}


def convert_vggish(spec: ModelSpec, fetched: list[Fetched], out: Path) -> None:
    """torchvggish's weights and PCA files (in that order) -> two safetensors files that
    :func:`coaudio.features.embed.load_vggish` reads (checked against the same VGGish shapes
    it checks)."""
    weights, pca = fetched
    tensors = read_vggish_weights(weights.path)
    _save(tensors, out / spec.output("weights"), _metadata(spec, weights, "vggish"))
    del tensors  # 289 MB
    params = read_vggish_pca(pca.path)
    _save(params, out / spec.output("pca"), _metadata(spec, pca, "vggish-pca"))


# ---------------------------------------------------------------------------- musicnn


def _wheel_member(wheel: zipfile.ZipFile, suffix: str, path: Path) -> str:
    names = [n for n in wheel.namelist() if n.endswith(suffix)]
    if len(names) != 1:
        raise ConvertError(f"{path.name}: expected one {suffix} in the wheel, found {len(names)}")
    return names[0]


def _notice(spec: ModelSpec, wheel: Fetched, n_tensors: int) -> str:
    return (
        f"{spec.output('weights')} holds the {MUSICNN_MODEL} model of musicnn 0.1.0 by Jordi Pons,\n"
        "Music Technology Group, Universitat Pompeu Fabra (https://github.com/jordipons/musicnn):\n"
        f"its {n_tensors} model tensors, unchanged, taken from the TensorFlow checkpoint in the wheel\n"
        f"{wheel.file.name}\n(SHA-256 {wheel.sha256})\nand stored as safetensors by coaudio.\n"
        f"musicnn is distributed under the ISC licence; its notice, which must stay with copies,\n"
        f"is in {spec.output('licence')}.\n"
    )


def convert_musicnn(spec: ModelSpec, fetched: list[Fetched], out: Path) -> None:
    """The musicnn wheel -> ``MSD_musicnn``'s model tensors (named as in TensorFlow, the Adam
    slots left out) as safetensors, with the wheel's ISC licence and a NOTICE beside them."""

    from coaudio.features.musicnn import TENSOR_SHAPES, load_musicnn
    from coaudio.pretrained.tfbundle import read_bundle

    (wheel,) = fetched
    checkpoint = out / ".checkpoint" / MUSICNN_MODEL
    checkpoint.mkdir(parents=True)
    try:
        with zipfile.ZipFile(wheel.path) as z:
            for suffix in (".index", ".data-00000-of-00001"):
                member = _wheel_member(z, f"/{MUSICNN_MODEL}/{suffix}", wheel.path)
                (checkpoint / suffix).write_bytes(z.read(member))
            licence = z.read(_wheel_member(z, ".dist-info/LICENSE.md", wheel.path))
        tensors = read_bundle(f"{checkpoint}/")
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ConvertError(f"{wheel.path.name}: not a usable musicnn wheel ({_why(exc)})") from None
    finally:
        import shutil

        shutil.rmtree(checkpoint.parent, ignore_errors=True)
    problems = [f"missing {k}" for k in TENSOR_SHAPES if k not in tensors]
    problems += [
        f"{k} {tensors[k].shape} (expected {tuple(shape)})"
        for k, shape in TENSOR_SHAPES.items()
        if k in tensors and tensors[k].shape != tuple(shape)
    ]
    if problems:
        raise ConvertError(
            f"{wheel.path.name}: not the {MUSICNN_MODEL} checkpoint ({'; '.join(problems[:3])})"
        )
    kept = {k: np.ascontiguousarray(tensors[k], dtype=np.float32) for k in TENSOR_SHAPES}
    _save(kept, out / spec.output("weights"), _metadata(spec, wheel, MUSICNN_MODEL), "numpy")
    (out / spec.output("licence")).write_bytes(licence)
    (out / spec.output("notice")).write_text(_notice(spec, wheel, len(kept)))
    load_musicnn(out / spec.output("weights"))  # loads where it is used: a converter bug shows now


CONVERTERS: dict[str, Callable[[ModelSpec, list[Fetched], Path], None]] = {
    "vggish": convert_vggish,
    "musicnn": convert_musicnn,
}
