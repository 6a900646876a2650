"""The fused C kernel for one-layer steps: same results as the torch step, used only where it
applies, and a clean fallback when it cannot be built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from coaudio.continual import native, stack_states
from tests.continual.helpers import make_encoder, stream

requires_native = pytest.mark.skipif(
    native.library() is None, reason="no C compiler here: the fused kernel cannot be built"
)


def _both(encoder, x, **kwargs):
    with torch.no_grad():
        return stream(encoder, x, kernel="native", **kwargs), stream(encoder, x, kernel="torch", **kwargs)


@requires_native
@pytest.mark.parametrize(
    "options",
    [{}, {"norm_first": True}, {"activation": "relu"}, {"bias": False}],
    ids=["post-ln-gelu", "pre-ln", "relu", "no-bias"],
)
def test_native_equals_torch_including_warm_up(options):
    encoder = make_encoder(1, 7, 24, 3, 40, dtype=torch.float32, **options)
    x = torch.randn(2, 30, 24)
    fused, reference = _both(encoder, x, emit_partial=True)
    for a, b in zip(fused, reference):
        assert (a - b).abs().max() < 1e-5


@requires_native
def test_native_without_positions_and_with_streams_at_different_phases():
    from coaudio.continual import ContinualEncoder, EncoderConfig, LayerConfig

    cfg = EncoderConfig(
        layer=LayerConfig(d_model=16, n_heads=2, d_ff=16, dropout=0.0), window=5, positional="none"
    )
    encoder = ContinualEncoder(cfg).eval()
    a, b = torch.randn(1, 20, 16), torch.randn(1, 20, 16)
    with torch.no_grad():
        sa, sb = encoder.init_state(1), encoder.init_state(1)
        for t in range(2):
            _, sa = encoder.step(a[:, t], sa, kernel="torch")
        for t in range(9):
            _, sb = encoder.step(b[:, t], sb, kernel="torch")
        both = stack_states([sa, sb])
        for k in range(6):
            y, both = encoder.step(
                torch.cat([a[:, 2 + k], b[:, 9 + k]]), both, kernel="native", emit_partial=True
            )
            ya, sa = encoder.step(a[:, 2 + k], sa, kernel="torch", emit_partial=True)
            yb, sb = encoder.step(b[:, 9 + k], sb, kernel="torch", emit_partial=True)
            assert (y - torch.cat([ya, yb])).abs().max() < 1e-5
        assert both.t.tolist() == [8, 15]


@requires_native
def test_native_step_leaves_input_state_alone():
    encoder = make_encoder(1, 4, dtype=torch.float32)
    x = torch.randn(1, 32)
    with torch.no_grad():
        state = encoder.init_state(1)
        for _ in range(6):
            _, state = encoder.step(x, state, kernel="native")
        before = [state.t.clone(), state.layers[0].k_t.clone(), state.layers[0].v_t.clone()]
        first, _ = encoder.step(x, state, kernel="native")
        again, _ = encoder.step(x, state, kernel="native")
    after = [state.t, state.layers[0].k_t, state.layers[0].v_t]
    assert all(torch.equal(u, w) for u, w in zip(before, after))
    assert torch.equal(first, again)


@requires_native
def test_native_follows_weight_changes_and_device_moves():
    encoder = make_encoder(1, 4, dtype=torch.float32)
    x = torch.randn(1, 12, 32)
    with torch.no_grad():
        before, _ = _both(encoder, x)
        for p in encoder.parameters():  # in place, as an optimizer step does
            p.mul_(1.5)
        fused, reference = _both(encoder, x)
        assert (fused[-1] - reference[-1]).abs().max() < 1e-5
        assert (fused[-1] - before[-1]).abs().max() > 1e-3
        encoder.double().float()  # new storage for every parameter
        fused, reference = _both(encoder, x)
        assert (fused[-1] - reference[-1]).abs().max() < 1e-5


def test_auto_uses_torch_where_the_kernel_does_not_apply():
    encoder = make_encoder(1, 4, dtype=torch.float32)
    x = torch.randn(1, 32)
    state = encoder.init_state(1)
    assert native.binding(encoder, x) is None  # gradients are on outside no_grad
    with torch.no_grad():
        assert native.binding(make_encoder(2, 4, dtype=torch.float32), x) is None
        assert native.binding(make_encoder(1, 4, dtype=torch.float64), x.double()) is None
        deep64 = make_encoder(2, 4, dtype=torch.float64)
        assert not native.retroactive_usable(deep64.layers[0], x.double())
        with pytest.raises(RuntimeError, match="fused kernels"):
            deep64.step(x.double(), deep64.init_state(1), kernel="native")
        with pytest.raises(ValueError, match="kernel must be"):
            encoder.step(x, state, kernel="fast")
    y, _ = encoder.step(x, state, emit_partial=True)  # gradients on: stepped without autograd
    assert y.grad_fn is None and encoder.step_kernel(x) == "torch"  # outside no_grad, auto = torch
    with torch.no_grad():
        torch.testing.assert_close(y, encoder.step(x, state, emit_partial=True)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "env", [{"COAUDIO_NATIVE": "0"}, {"CC": "/bin/false"}], ids=["disabled", "compiler-fails"]
)
def test_without_the_kernel_steps_still_work(env, tmp_path):
    code = (
        "import torch\n"
        "from coaudio.continual import native\n"
        "from tests.continual.helpers import make_encoder, stream\n"
        "assert native.library() is None\n"
        "enc = make_encoder(1, 4, dtype=torch.float32)\n"
        "x = torch.randn(1, 9, 32)\n"
        "with torch.no_grad():\n"
        "    out = stream(enc, x)\n"
        "    ref = enc(x[:, -4:], start=5)\n"
        "assert (out[-1] - ref).abs().max() < 1e-5\n"
        "print('ok')\n"
    )
    full_env = {**os.environ, "COAUDIO_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin", **env}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=os.getcwd(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler on this machine"
)
def test_kernel_compiles_into_the_cache_folder(tmp_path):
    code = (
        "from coaudio.continual import native\n"
        "lib = native.library()\n"
        "assert lib is not None\n"
        "print(lib._name)\n"
    )
    env = {**os.environ, "COAUDIO_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    built = list((tmp_path / "native").glob("steps-*.so"))
    assert [str(p) for p in built] == [done.stdout.strip()]
    assert not list((tmp_path / "native").glob("*.tmp"))  # written atomically


def test_installed_package_ships_the_kernel_source():
    """`pip install .` must carry steps.c, or installed copies silently lose the kernels."""
    from importlib import metadata

    try:
        files = metadata.files("coaudio") or []
    except metadata.PackageNotFoundError:
        pytest.skip("coaudio is not installed (running from a bare checkout)")
    names = [str(f) for f in files]
    if not any(name.startswith("coaudio/") for name in names):
        pytest.skip("editable install: the source tree is used directly")
    assert "coaudio/continual/steps.c" in names


@requires_native
@pytest.mark.parametrize("n_layers", [2, 3])
def test_fused_retroactive_update_equals_torch_at_every_phase(n_layers):
    encoder = make_encoder(n_layers, 6, 24, 3, 40, dtype=torch.float32)
    x = torch.randn(2, 40, 24) * 3.0
    fused, reference = _both(encoder, x, emit_partial=True)
    for a, b in zip(fused, reference):
        assert (a - b).abs().max() < 1e-5
    with torch.no_grad():  # streams at different phases, and the input state left alone
        sa, sb = encoder.init_state(1), encoder.init_state(1)
        for t in range(3):
            _, sa = encoder.step(x[:1, t], sa)
        for t in range(11):
            _, sb = encoder.step(x[1:, t], sb)
        both = stack_states([sa, sb])
        before = [leaf.clone() for leaf in both.layers[0]]
        y, _ = encoder.step(torch.cat([x[:1, 3], x[1:, 11]]), both, kernel="native", emit_partial=True)
        assert all(torch.equal(u, w) for u, w in zip(before, both.layers[0]))
        ya, _ = encoder.step(x[:1, 3], sa, kernel="torch", emit_partial=True)
        yb, _ = encoder.step(x[1:, 11], sb, kernel="torch", emit_partial=True)
        assert (y - torch.cat([ya, yb])).abs().max() < 1e-5


def test_step_kernel_names_the_path_taken():
    x = torch.randn(1, 32)
    one, two = make_encoder(1, 4, dtype=torch.float32), make_encoder(2, 4, dtype=torch.float32)
    assert one.step_kernel(x) == "torch"  # gradients on
    with torch.no_grad():
        assert one.step_kernel(x, "torch") == two.step_kernel(x, "torch") == "torch"
        if native.library() is not None:
            assert one.step_kernel(x) == "native"
            assert two.step_kernel(x) == "native-retroactive"
