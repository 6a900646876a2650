"""The model store against a real HTTP server on 127.0.0.1: verified, resumable, atomic
installs; clear messages when the network or a file fails; damaged installs never used; the
real musicnn wheel through pip's own download; VGGish files converted to safetensors."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from coaudio.pretrained import convert, registry
from coaudio.pretrained.registry import MUSICNN, VGGISH, ModelSpec, SourceFile, UnknownModel
from coaudio.pretrained.sources import FetchError, by_hand
from coaudio.pretrained.store import (
    ENV_VAR,
    MANIFEST,
    ModelNotFetched,
    fetch_model,
    model_file,
    model_sha256,
    model_status,
    models_dir,
)
from tests.downloads import MUSICNN_WHEEL_SHA256, musicnn_wheel
from tests.pretrained.server import FileServer

A = random.Random(1).randbytes(300_000)
B = random.Random(2).randbytes(2_500_000)  # over one 1 MB read: a cut connection keeps some
SHA_A, SHA_B = hashlib.sha256(A).hexdigest(), hashlib.sha256(B).hexdigest()
B_NAME = f"b-{SHA_B[:8]}.bin"  # the torch.hub way: the name carries the digest's first 8 digits


def _copy(spec: ModelSpec, fetched, out: Path) -> None:
    """The test model's converter: the installed files are the sources' bytes."""
    (out / "tiny.bin").write_bytes(b"".join(item.path.read_bytes() for item in fetched))
    (out / "b.txt").write_text("converted")


def tiny_spec(base: str) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        description="a test model",
        licence="MIT",
        source="the test server",
        homepage="http://127.0.0.1/",
        files=(
            SourceFile("a.bin", SHA_A, (f"{base}/a.bin",), size=len(A)),
            SourceFile(B_NAME, SHA_B[:8], (f"{base}/{B_NAME}",)),
        ),
        outputs=(("weights", "tiny.bin"), ("extra", "b.txt")),
        converter="test-copy",
    )


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No proxy (127.0.0.1 is contacted directly), no $COAUDIO_MODELS, and a home folder of
    its own, so no test ever touches the user's models."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setitem(convert.CONVERTERS, "test-copy", _copy)


@pytest.fixture
def server():
    with FileServer({"/mirror/a.bin": A, f"/mirror/{B_NAME}": B}) as s:
        yield s


@pytest.fixture
def tiny(server, monkeypatch):
    spec = tiny_spec(f"{server.url}/mirror")
    monkeypatch.setitem(registry.MODELS, "tiny", spec)
    return spec


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(root: Path) -> list[str]:
    """Everything in the models folder but lock files and installed models."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(".lock") and p.is_file()
    )


def test_the_models_folder_is_the_option_else_the_environment_else_the_user_cache(tmp_path, monkeypatch):
    assert models_dir() == tmp_path / "home" / ".cache" / "coaudio" / "models"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert models_dir() == tmp_path / "env"
    assert models_dir(tmp_path / "option") == tmp_path / "option"
    monkeypatch.chdir(tmp_path)
    assert models_dir("relative") == tmp_path / "relative"  # absolute: messages are unambiguous


def test_a_fetch_from_the_server_is_verified_installed_once_and_named(tiny, server, tmp_path):
    root = tmp_path / "models"
    assert model_status("tiny", root).state == "absent"
    done = fetch_model("tiny", root)
    assert done.fetched and done.folder == root / "tiny"
    assert done.files == {"weights": root / "tiny" / "tiny.bin", "extra": root / "tiny" / "b.txt"}
    assert model_file("tiny", dir=root).read_bytes() == A + B
    assert model_sha256("tiny", "weights", root) == hashlib.sha256(A + B).hexdigest()
    status = model_status("tiny", root)
    assert status.state == "present" and status.size == len(A + B) + len("converted")
    manifest = json.loads((root / "tiny" / MANIFEST).read_text())
    assert manifest["source"]["files"] == [  # the full digest of the file known by its prefix too
        {"name": "a.bin", "sha256": SHA_A, "size": len(A)},
        {"name": B_NAME, "sha256": SHA_B, "size": len(B)},
    ]
    assert manifest["model"] == "tiny" and manifest["licence"] == "MIT"
    assert _leftovers(root) == ["tiny/b.txt", f"tiny/{MANIFEST}", "tiny/tiny.bin"]  # no downloads kept

    asked = len(server.requests)
    assert fetch_model("tiny", root).fetched is False and len(server.requests) == asked  # nothing done
    assert fetch_model("tiny", root, force=True).fetched and len(server.requests) == asked + 2


@pytest.mark.parametrize("how", ["folder URL", "file URL", "folder"])
def test_a_mirror_or_a_local_folder_instead_of_the_registry(tiny, server, tmp_path, how):
    spec = replace(
        tiny, files=tuple(replace(f, urls=(f"http://127.0.0.1:{_closed_port()}/x",)) for f in tiny.files)
    )
    local = tmp_path / "offline"
    local.mkdir()
    (local / "a.bin").write_bytes(A)
    (local / B_NAME).write_bytes(B)
    source = {
        "folder URL": f"{server.url}/mirror/",
        "file URL": f"{server.url}/mirror/a.bin",
        "folder": local,
    }
    done = fetch_model(spec, tmp_path / "models", source=source[how])
    assert done.fetched and done.files["weights"].read_bytes() == A + B
    assert (local / "a.bin").exists() and (local / B_NAME).exists()  # a --from folder is not ours to empty


def test_an_interrupted_download_is_resumed_and_nothing_is_installed_before(tiny, server, tmp_path):
    root = tmp_path / "models"
    server.cut_after[f"/mirror/{B_NAME}"] = 1_500_000
    with pytest.raises(FetchError, match=r"download interrupted after .* run again to resume$"):
        fetch_model("tiny", root)
    assert model_status("tiny", root).state == "absent"
    partial = root / ".downloads" / "tiny" / f"{B_NAME}.partial"
    assert 0 < partial.stat().st_size < len(B)
    kept = partial.stat().st_size
    assert fetch_model("tiny", root).fetched
    assert server.file_requests(B_NAME)[-1] == f"bytes={kept}-"
    assert server.file_requests("a.bin") == [None]  # a.bin was verified and kept, not fetched again
    assert model_file("tiny", dir=root).read_bytes() == A + B


@pytest.mark.parametrize("which", ["prefix", "full"])
def test_a_wrong_checksum_removes_the_download_and_installs_nothing(tiny, server, tmp_path, which):
    root = tmp_path / "models"
    name = B_NAME if which == "prefix" else "a.bin"
    server.files[f"/mirror/{name}"] = b"not the file" * 1000
    expected = f"a SHA-256 starting {SHA_B[:8]}" if which == "prefix" else SHA_A
    with pytest.raises(FetchError) as caught:
        fetch_model("tiny", root)
    message = str(caught.value)
    assert f"{server.url}/mirror/{name}: checksum mismatch (expected {expected}, got " in message
    assert "the file was removed; nothing was installed; to install tiny by hand, download" in message
    assert model_status("tiny", root).state == "absent"
    # Only verified downloads are kept, for the next try (a.bin came before b's mismatch).
    assert _leftovers(root) == ([".downloads/tiny/a.bin"] if which == "prefix" else [])


def test_an_unreachable_server_says_what_to_download_by_hand_and_where(tiny, tmp_path):
    port = _closed_port()
    spec = replace(
        tiny, files=tuple(replace(f, urls=(f"http://127.0.0.1:{port}/m/{f.name}",)) for f in tiny.files)
    )
    root = tmp_path / "models"
    with pytest.raises(FetchError) as caught:
        fetch_model(spec, root)
    assert str(caught.value) == (
        f"cannot reach 127.0.0.1:{port}: connection refused; nothing was installed; to install tiny by "
        f"hand, download http://127.0.0.1:{port}/m/a.bin and http://127.0.0.1:{port}/m/{B_NAME} into "
        f"one folder, then run 'coaudio models fetch tiny --from FOLDER --dir {root}' (it checks the "
        f"files and installs tiny into {root}/tiny)"
    )
    assert not (root / "tiny").exists() and _leftovers(root) == []


def test_the_by_hand_messages_of_the_registry(tmp_path):
    """Without a network (github.com is not even resolved here): the real URLs and pages."""
    folder = tmp_path / "vggish"
    assert by_hand(VGGISH, folder, "") == (
        "to install vggish by hand, download "
        "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth and "
        "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth "
        f"into one folder, then run 'coaudio models fetch vggish --from FOLDER' (it checks the files "
        f"and installs vggish into {folder})"
    )
    assert by_hand(MUSICNN, folder, " --dir /m").startswith(
        f"to install musicnn by hand, download musicnn-0.1.0-py3-none-any.whl (SHA-256 "
        f"{MUSICNN_WHEEL_SHA256}) from https://pypi.org/project/musicnn/0.1.0/#files into a folder, "
        "then run 'coaudio models fetch musicnn --from FOLDER --dir /m'"
    )


def test_model_file_of_a_model_not_fetched_says_which_fetch_to_run(tmp_path, monkeypatch):
    home = tmp_path / "home" / ".cache" / "coaudio" / "models"
    with pytest.raises(ModelNotFetched) as caught:
        model_file("musicnn")
    assert isinstance(caught.value, FileNotFoundError)
    assert str(caught.value) == (
        f"model 'musicnn' is not in {home}: run 'coaudio models fetch musicnn' "
        f"(or set {ENV_VAR} to a folder that has it)"
    )
    with pytest.raises(ModelNotFetched) as caught:
        model_sha256("vggish", "pca", tmp_path / "m")
    assert str(caught.value) == (
        f"model 'vggish' is not in {tmp_path / 'm'}: run 'coaudio models fetch vggish --dir {tmp_path / 'm'}'"
    )
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(ModelNotFetched) as caught:
        model_file("musicnn")
    assert str(caught.value) == (
        f"model 'musicnn' is not in {tmp_path / 'env'} ({ENV_VAR}): run 'coaudio models fetch musicnn'"
    )
    with pytest.raises(UnknownModel, match="unknown model 'nope'; known: musicnn, vggish"):
        model_file("nope")
    with pytest.raises(ValueError, match="model 'musicnn' has no 'pca' file"):
        model_file("musicnn", "pca")


@pytest.mark.parametrize(
    "damage", ["no manifest", "bad manifest", "truncated", "missing file", "same size, other bytes"]
)
def test_a_damaged_install_is_never_used_and_a_fetch_replaces_it(tiny, tmp_path, damage):
    root = tmp_path / "models"
    fetch_model("tiny", root)
    installed = root / "tiny" / "tiny.bin"
    if damage == "no manifest":  # what a copy that stopped half way looks like
        (root / "tiny" / MANIFEST).unlink()
    elif damage == "bad manifest":
        manifest = json.loads((root / "tiny" / MANIFEST).read_text())
        manifest["files"]["tiny.bin"] = {"size": "big"}
        (root / "tiny" / MANIFEST).write_text(json.dumps(manifest))
    elif damage == "truncated":
        installed.write_bytes((A + B)[:1000])
    elif damage == "missing file":
        installed.unlink()
    else:
        installed.write_bytes(bytes(len(A + B)))  # the size is right; the mtime changed, so it is hashed
    status = model_status("tiny", root)
    assert status.state == "damaged" and status.files == {}
    with pytest.raises(
        ModelNotFetched, match=r"model 'tiny' in .* is damaged \(.+\): run 'coaudio models fetch"
    ):
        model_file("tiny", dir=root)
    assert fetch_model("tiny", root).fetched  # no --force needed
    assert model_file("tiny", dir=root).read_bytes() == A + B
    assert not list(root.glob(".tiny.*-*"))  # no build or old folders left


def test_files_are_judged_by_their_bytes_not_their_size_and_time(tiny, tmp_path):
    """A copy that did not keep mtimes is still present; bytes changed with size and mtime kept
    (cp -p of a bad copy) are damaged for list, fetch and use alike, and a plain fetch repairs."""
    from coaudio import digests

    root = tmp_path / "models"
    fetch_model("tiny", root)
    path = root / "tiny" / "tiny.bin"
    os.utime(path, ns=(1, 1))
    assert model_status("tiny", root).state == "present"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    digests.forget()  # as the next command, a new process, would see it
    status = model_status("tiny", root)
    assert status.state == "damaged" and "does not match its recorded SHA-256" in status.problem
    with pytest.raises(ModelNotFetched, match="damaged"):
        model_file("tiny", dir=root)
    assert fetch_model("tiny", root).fetched and path.read_bytes() == A + B  # replaced, not "already there"


def test_a_fetch_stopped_while_converting_installs_nothing_and_keeps_the_downloads(tiny, server, tmp_path):
    root = tmp_path / "models"

    def interrupted(spec, fetched, out):
        (out / "tiny.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    convert.CONVERTERS["test-copy"] = interrupted
    with pytest.raises(KeyboardInterrupt):
        fetch_model("tiny", root)
    assert model_status("tiny", root).state == "absent" and not list(root.glob(".tiny.installing-*"))
    assert sorted(p.name for p in (root / ".downloads" / "tiny").iterdir()) == sorted([B_NAME, "a.bin"])
    asked = len(server.requests)
    convert.CONVERTERS["test-copy"] = _copy
    assert fetch_model("tiny", root).fetched and len(server.requests) == asked  # verified and reused


def test_two_fetches_at_once_install_one_model_intact(tiny, server, tmp_path):
    root = tmp_path / "models"
    server.stall_after[f"/mirror/{B_NAME}"] = 10  # holds the first fetch while the second starts
    results, errors = [], []

    def fetch():
        try:
            results.append(fetch_model("tiny", root))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    threading.Timer(1.0, server.closing.set).start()  # the stalled response ends: an interruption
    for thread in threads:
        thread.join(30)
    # The first saw its download stall and break off (resumable) or finished; the second waited for
    # the lock and then resumed or found the model installed. Never a corrupt install.
    assert len(results) + len(errors) == 2 and results, errors
    assert all("run again to resume" in str(e) for e in errors)
    assert model_file("tiny", dir=root).read_bytes() == A + B


# ---------------------------------------------------------------------------- VGGish


def _named(folder: Path, stem: str, data: bytes) -> Path:
    """``data`` saved as ``<stem>-<first 8 digits of its SHA-256>.pth``."""
    path = folder / f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    path.write_bytes(data)
    return path


def _torch_bytes(obj, tmp: Path, legacy: bool = False) -> bytes:
    torch.save(obj, tmp, _use_new_zipfile_serialization=not legacy)
    return tmp.read_bytes()


@pytest.fixture(scope="module")
def vggish_files(tmp_path_factory):
    """A random-weight VGGish state dict in torch's legacy format (as torchvggish's 2019 release
    was written), and PCA parameters as numpy arrays inside a torch pickle."""
    from coaudio.features.embed import VGGish

    folder = tmp_path_factory.mktemp("vggish-release")
    torch.manual_seed(3)
    state = VGGish().state_dict()
    pca = {
        "pca_eigen_vectors": np.random.default_rng(0).normal(size=(128, 128)),
        "pca_means": np.arange(128.0),
    }
    weights = _named(folder, "vggish", _torch_bytes(state, folder / "w.tmp", legacy=True))
    pca_path = _named(folder, "vggish_pca_params", _torch_bytes(pca, folder / "p.tmp"))
    spec = replace(
        VGGISH,
        files=(
            replace(VGGISH.files[0], name=weights.name, sha256=weights.name[-12:-4]),
            replace(VGGISH.files[1], name=pca_path.name, sha256=pca_path.name[-12:-4]),
        ),
    )
    return spec, folder, state, pca


def test_vggish_files_install_as_safetensors_that_load_vggish_reads(vggish_files, tmp_path):
    from safetensors import safe_open

    from coaudio.features.embed import load_vggish

    spec, folder, state, pca = vggish_files
    done = fetch_model(spec, tmp_path / "models", source=folder)
    assert done.files == {
        "weights": tmp_path / "models" / "vggish" / "vggish.safetensors",
        "pca": tmp_path / "models" / "vggish" / "vggish_pca.safetensors",
    }
    model = load_vggish(
        model_file(spec, "weights", tmp_path / "models"), model_file(spec, "pca", tmp_path / "models")
    )
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert torch.allclose(model.pca_eigen_vectors, torch.from_numpy(pca["pca_eigen_vectors"]).float())
    assert torch.equal(model.pca_means, torch.arange(128.0))
    with safe_open(done.files["weights"], "pt") as f:
        metadata = f.metadata()
    assert metadata["licence"] == "Apache-2.0" and metadata["source"] == spec.files[0].name
    manifest = json.loads((done.folder / MANIFEST).read_text())
    recorded = manifest["source"]["files"][0]["sha256"]  # the full digest of what was verified
    assert len(recorded) == 64 and recorded.startswith(spec.files[0].sha256)


@pytest.mark.parametrize(
    "form", ["numpy", "numpy, legacy format", "numpy 1 names", "tensors, means (128, 1)"]
)
def test_the_pca_file_is_read_without_unpickling_code(tmp_path, form):
    rng = np.random.default_rng(1)
    vectors, means = rng.normal(size=(128, 128)), rng.normal(size=128)
    path = tmp_path / "pca.pth"
    if form.startswith("tensors"):
        torch.save(
            {"pca_eigen_vectors": torch.from_numpy(vectors), "pca_means": torch.from_numpy(means)[:, None]},
            path,
        )
    else:
        torch.save(
            {"pca_eigen_vectors": vectors, "pca_means": means},
            path,
            _use_new_zipfile_serialization=form == "numpy",
        )
    if form == "numpy 1 names":  # what numpy < 2 wrote: numpy.core, not numpy._core
        path.write_bytes(path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    params = convert.read_vggish_pca(path)
    assert params["pca_eigen_vectors"].dtype == torch.float32
    assert torch.equal(params["pca_eigen_vectors"], torch.from_numpy(vectors).float())
    assert torch.equal(params["pca_means"], torch.from_numpy(means).float())


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_weight_file_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"pca_eigen_vectors": _Payload()}, path)
    with pytest.raises(
        convert.ConvertError, match=r"^evil.pth: not a readable VGGish PCA file \(.*GLOBAL posix.system"
    ):
        convert.read_vggish_pca(path)


def test_a_file_that_is_not_vggish_installs_nothing(vggish_files, tmp_path):
    spec, _, _, pca = vggish_files
    folder = tmp_path / "wrong"
    folder.mkdir()
    weights = _named(folder, "vggish", _torch_bytes({"features.0.weight": torch.zeros(3)}, tmp_path / "w"))
    pca_path = _named(folder, "vggish_pca_params", _torch_bytes(pca, tmp_path / "p"))
    spec = replace(
        spec,
        files=(
            replace(spec.files[0], name=weights.name, sha256=weights.name[-12:-4]),
            replace(spec.files[1], name=pca_path.name, sha256=pca_path.name[-12:-4]),
        ),
    )
    with pytest.raises(
        convert.ConvertError, match=r"not a VGGish weight file \(missing .*; nothing was installed$"
    ):
        fetch_model(spec, tmp_path / "models", source=folder)
    assert model_status(spec, tmp_path / "models").state == "absent"
    assert not list((tmp_path / "models").glob(".vggish.*-*"))


# ---------------------------------------------------------------------------- musicnn


def _pip_env(monkeypatch, index: str) -> None:
    """pip configured for this test alone: the local index, no config files, no cache."""
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


@pytest.fixture(scope="module")
def wheel():
    """The real musicnn wheel (before the tests' own HOME hides the test downloads' default)."""
    return musicnn_wheel()


def test_musicnn_through_pip_and_a_local_index_installs_its_64_tensors_and_licence(
    wheel, tmp_path, monkeypatch
):
    """pip's own download, pointed at a PEP 503 index on 127.0.0.1 by PIP_INDEX_URL: the user's
    pip configuration is what decides where the wheel comes from."""
    pytest.importorskip("coaudio.pretrained.tfbundle")
    from safetensors import safe_open

    from coaudio.features.musicnn import TENSOR_SHAPES, load_musicnn

    with FileServer({f"/files/{registry.MUSICNN_WHEEL}": wheel.read_bytes()}, index=True) as server:
        _pip_env(monkeypatch, f"{server.url}/simple/")
        done = fetch_model("musicnn", tmp_path / "models")
        assert ("/simple/musicnn/", None) in server.requests
    assert done.fetched and set(done.files) == {"weights", "licence", "notice"}
    with safe_open(done.files["weights"], "np") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
        metadata = f.metadata()
    assert len(shapes) == 64 and shapes == {k: list(v) for k, v in TENSOR_SHAPES.items()}
    assert metadata == {
        "model": "MSD_musicnn",
        "licence": "ISC",
        "source": registry.MUSICNN_WHEEL,
        "source_sha256": MUSICNN_WHEEL_SHA256,
        "converted_by": "coaudio",
    }
    with zipfile.ZipFile(wheel) as z:
        assert done.files["licence"].read_bytes() == z.read("musicnn-0.1.0.dist-info/LICENSE.md")
    notice = done.files["notice"].read_text()
    assert "ISC" in notice and MUSICNN_WHEEL_SHA256 in notice and "LICENSE-musicnn.md" in notice
    load_musicnn(model_file("musicnn", dir=tmp_path / "models"))
    assert not (tmp_path / "models" / ".downloads").exists()  # the wheel is not kept


def test_a_failing_pip_download_shows_pips_reason_and_the_way_by_hand(tmp_path, monkeypatch):
    """(No network is used: the index is on 127.0.0.1.)"""
    with FileServer({}, index=True) as server:  # an index without musicnn
        _pip_env(monkeypatch, f"{server.url}/simple/")
        with pytest.raises(FetchError) as caught:
            fetch_model("musicnn", tmp_path / "models")
    message = str(caught.value)
    assert message.startswith("pip could not download musicnn==0.1.0 (")
    assert "No matching distribution found for musicnn==0.1.0" in message
    assert (
        "; nothing was installed; to install musicnn by hand, download musicnn-0.1.0-py3-none-any.whl"
        in message
    )
    assert "\n" not in message and model_status("musicnn", tmp_path / "models").state == "absent"


def test_a_local_source_that_cannot_be_used_says_why_without_the_download_paragraph(tmp_path):
    """The user already has files: the error is about them, not about downloading."""
    single = tmp_path / "vggish-10086976.pth"
    single.write_bytes(b"x")
    with pytest.raises(
        FetchError,
        match=r"is a file; vggish needs .* give the folder that holds them; nothing was installed$",
    ):
        fetch_model("vggish", tmp_path / "models", source=single)
    with pytest.raises(FetchError, match=r"10086976.pth: checksum mismatch .*; nothing was installed$"):
        fetch_model("vggish", tmp_path / "models", source=tmp_path)
