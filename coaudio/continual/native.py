"""Optional fused C kernels for continual steps on the CPU, float32.

* the whole one-layer (CoSi) encoder step;
* the retroactive (CoRe) attention update of the first layer of deeper encoders.

The kernels (``steps.c``, shipped with the package) are compiled once per machine with the
system C compiler into a cache folder (``$COAUDIO_CACHE`` or ``~/.cache/coaudio``), written
atomically, and loaded with ctypes. Without a compiler, or with ``COAUDIO_NATIVE=0``, every
step runs the torch implementation instead, which is also the reference the kernel is tested
against. The kernels only run where the torch path would compute the same thing without
autograd: CPU, float32, gradients off, no dropout, recycling (or no) positions.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path

import torch
from torch import Tensor

from coaudio.continual.retroactive import RECOMPUTE_BELOW
from coaudio.continual.single_output import write_slot
from coaudio.continual.state import EncoderState, RetroactiveState, SingleOutputState

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("steps.c")
FLAGS = ["-O3", "-ffast-math", "-march=native", "-mprefer-vector-width=512", "-fPIC", "-shared", "-std=c99"]
_F = ctypes.POINTER(ctypes.c_float)


class _CoreDims(ctypes.Structure):
    """Mirror of ``core_dims`` in steps.c."""

    _fields_ = [
        ("h", ctypes.c_int64),
        ("dh", ctypes.c_int64),
        ("n", ctypes.c_int64),
        ("recompute_below", ctypes.c_float),
    ]


class _Layer(ctypes.Structure):
    """Mirror of ``cosi_layer`` in steps.c."""

    _fields_ = [(name, ctypes.c_int64) for name in ("d", "h", "f", "n", "period", "norm_first", "gelu")]
    _fields_ += [("scale", ctypes.c_float), ("eps", ctypes.c_float)]
    _fields_ += [
        (name, _F)
        for name in (
            "w_qkv",
            "b_qkv",
            "w_out",
            "b_out",
            "w_ff1",
            "b_ff1",
            "w_ff2",
            "b_ff2",
            "ln1_w",
            "ln1_b",
            "ln2_w",
            "ln2_b",
            "pos",
        )
    ]


def _cpu_fingerprint() -> str:
    """Compiled with -march=native: a cached library is only valid for the same CPU."""
    try:
        flags = next(
            (ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), ""
        )
    except OSError:
        flags = ""
    return platform.machine() + flags


def _compile(target: Path) -> None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        cmd = [compiler, *FLAGS, str(SOURCE), "-o", tmp, "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[:500]}")
        os.replace(tmp, target)  # atomic: concurrent first uses never load a half-written file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for stale in target.parent.glob("*.so"):  # builds of older sources (Linux keeps
        if stale != target:  # a library that a running process has loaded until it exits)
            stale.unlink(missing_ok=True)


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None (then the torch path is used)."""
    if os.environ.get("COAUDIO_NATIVE", "1") == "0":
        return None
    try:
        key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_fingerprint().encode())
        cache = Path(os.environ.get("COAUDIO_CACHE", Path.home() / ".cache" / "coaudio"))
        target = cache / "native" / f"steps-{key.hexdigest()[:16]}.so"
        if not target.exists():
            _compile(target)
        lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.info("fused kernels unavailable, using torch: %s", exc)
        return None
    fn = lib.coaudio_cosi_step
    fn.restype = ctypes.c_int
    # Tensors are passed as raw addresses (data_ptr ints): no per-call ctypes.cast.
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 8
    core = lib.coaudio_core_step
    core.restype = ctypes.c_int
    core.argtypes = [ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 19
    return lib


class _Binding:
    """The kernel's view of one encoder: weight pointers plus what is needed to notice that a
    parameter was replaced or moved (``.to()`` swaps storage; in-place updates such as
    optimizer steps or ``load_state_dict`` keep it, and the pointers alias the parameters)."""

    def __init__(self, encoder) -> None:
        layer = encoder.layers[0]
        owners = [
            (layer.qkv, "weight"),
            (layer.qkv, "bias"),
            (layer.out, "weight"),
            (layer.out, "bias"),
            (layer.ff1, "weight"),
            (layer.ff1, "bias"),
            (layer.ff2, "weight"),
            (layer.ff2, "bias"),
            (layer.norm1, "weight"),
            (layer.norm1, "bias"),
            (layer.norm2, "weight"),
            (layer.norm2, "bias"),
            (encoder.positions, "table"),
        ]
        self.slots = [(module._parameters, name) for module, name in owners]
        self.tensors = [params.get(name) for params, name in self.slots]
        self.pointers = [None if t is None else t.data_ptr() for t in self.tensors]
        cfg = layer.cfg
        self.eligible = (
            encoder.cfg.n_layers == 1
            and encoder.positions.kind != "absolute"
            and all(
                t is None or (t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous())
                for t in self.tensors
            )
        )
        self.dropout = cfg.dropout
        self.layer = layer
        self.packed = _Layer(
            cfg.d_model,
            cfg.n_heads,
            cfg.d_ff,
            encoder.window,
            encoder.positions.period,
            int(cfg.norm_first),
            int(cfg.activation == "gelu"),
            layer.scale,
            cfg.layer_norm_eps,
            *[None if p is None else ctypes.cast(p, _F) for p in self.pointers],
        )
        self.ref = ctypes.byref(self.packed)

    def current(self) -> bool:
        now = [params.get(name) for params, name in self.slots]
        return now == self.tensors and [None if t is None else t.data_ptr() for t in now] == self.pointers


_BINDINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def binding(encoder, x_t: Tensor) -> _Binding | None:
    """The kernel binding if the fused step computes exactly what the torch step would for
    this call (CPU float32 input, gradients off, no active dropout), else None."""
    if torch.is_grad_enabled() or x_t.dtype != torch.float32 or x_t.device.type != "cpu":
        return None
    if library() is None:
        return None
    bound = _BINDINGS.get(encoder)
    if bound is None or not bound.current():
        bound = _BINDINGS[encoder] = _Binding(encoder)
    if not bound.eligible or (bound.layer.training and bound.dropout > 0.0):
        return None
    return bound


def single_layer_step(bound: _Binding, x_t: Tensor, state):
    """The fused equivalent of the torch one-layer step: ``(y (B, D), new EncoderState)``."""
    k_t, v_t = state.layers[0]
    x, k_t, v_t, t = x_t.contiguous(), k_t.contiguous(), v_t.contiguous(), state.t.contiguous()
    y, t_new = torch.empty_like(x), torch.empty_like(t)
    k_new, v_new = torch.empty_like(k_t), torch.empty_like(v_t)
    status = library().coaudio_cosi_step(
        bound.ref,
        x.shape[0],
        t.data_ptr(),
        x.data_ptr(),
        k_t.data_ptr(),
        v_t.data_ptr(),
        y.data_ptr(),
        k_new.data_ptr(),
        v_new.data_ptr(),
        t_new.data_ptr(),
    )
    if status != 0:
        raise MemoryError("fused CoSi kernel could not allocate its scratch memory")
    new_state = EncoderState(t=t_new, layers=(SingleOutputState(k_new, v_new),), min_t=state.min_t + 1)
    return y, new_state


def retroactive_usable(layer, x_t: Tensor) -> bool:
    """Whether the fused CoRe update may replace the torch one for this call."""
    return (
        not torch.is_grad_enabled()
        and x_t.dtype == torch.float32
        and x_t.device.type == "cpu"
        and layer.qkv.weight.dtype == torch.float32
        and (not layer.training or layer.cfg.dropout == 0.0)
        and library() is not None
    )


def retroactive_step(layer, x_t: Tensor, state: RetroactiveState, ctx, t: Tensor):
    """The fused equivalent of :func:`coaudio.continual.retroactive.retroactive_step`;
    ``t`` is the ``(B,)`` token count of each stream before this step."""
    q, k, v = (part.contiguous() for part in layer.project_qkv(x_t))  # each (B, H, Dh)
    t = t.contiguous()  # bound to a name: a temporary could be freed before the C call runs
    x_ring = write_slot(state.x, ctx, x_t, slot_dim=1)
    rings = [part.contiguous() for part in state[1:]]  # q, k, v, m, den, num, mass
    outs = [torch.empty_like(part) for part in rings]
    b, h, n, dh = rings[0].shape
    attended = torch.empty(b, n, h * dh, dtype=x_t.dtype)
    dims = _CoreDims(h, dh, n, RECOMPUTE_BELOW)
    status = library().coaudio_core_step(
        ctypes.byref(dims),
        b,
        t.data_ptr(),
        q.data_ptr(),
        k.data_ptr(),
        v.data_ptr(),
        *[part.data_ptr() for part in rings],
        *[part.data_ptr() for part in outs],
        attended.data_ptr(),
    )
    if status != 0:
        raise MemoryError("fused CoRe kernel could not allocate its scratch memory")
    rows = layer.finish(x_ring, attended)  # (B, n, D)
    return rows, RetroactiveState(x_ring, *outs)
