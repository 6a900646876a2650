"""``coaudio models list|fetch|path`` against a real HTTP server on 127.0.0.1: what is printed
where, one-line errors with the right exit status, the models folder from --dir or
$COAUDIO_MODELS wherever the command runs, and Ctrl-C during a download."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors import safe_open

from coaudio.pretrained import convert, registry
from coaudio.pretrained.store import ENV_VAR
from coaudio_cli.main import run
from tests.downloads import musicnn_wheel
from tests.pretrained.server import FileServer
from tests.pretrained.test_store import B_NAME, A, B, _closed_port, _copy, tiny_spec


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "models"))
    monkeypatch.setitem(convert.CONVERTERS, "test-copy", _copy)


@pytest.fixture
def server():
    with FileServer({"/mirror/a.bin": A, f"/mirror/{B_NAME}": B}) as s:
        yield s


@pytest.fixture
def tiny(server, monkeypatch):
    """A test model in the registry whose own URLs lead nowhere: only --from works."""
    spec = tiny_spec(f"http://127.0.0.1:{_closed_port()}/gone")
    monkeypatch.setitem(registry.MODELS, "tiny", spec)
    return spec


def coaudio(capsys, *args) -> tuple[int, str, str]:
    status = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_list_before_and_after_a_fetch_from_a_mirror(tiny, server, tmp_path, capsys):
    models = tmp_path / "models"
    status, out, err = coaudio(capsys, "models", "list")
    assert status == 0 and not err
    assert out.startswith(f"models in {models}")
    rows = {
        line.split("│")[1].strip(): line
        for line in out.splitlines()
        if line.startswith("│ ") and "│" in line[2:]
    }
    assert {"musicnn", "vggish", "tiny"} <= set(rows)
    assert all(rows[name].rstrip("│ ").endswith("absent") for name in ("musicnn", "vggish", "tiny"))
    assert "Apache-2.0" in rows["vggish"] and "~289 MB" in rows["vggish"] and "29.3 MB" in rows["musicnn"]

    status, out, err = coaudio(capsys, "models", "fetch", "tiny", "--from", f"{server.url}/mirror/")
    assert (status, err) == (0, "")
    assert out == f"installed: tiny in {models / 'tiny'} (tiny.bin, b.txt)\n"

    status, out, _ = coaudio(capsys, "models", "list")
    assert f"present (2.8 MB): {models / 'tiny'}" in out
    status, out, _ = coaudio(capsys, "models", "list", "--json")
    records = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert records["tiny"]["status"] == "present" and records["musicnn"]["status"] == "absent"
    assert records["tiny"]["files"] == {
        "weights": str(models / "tiny" / "tiny.bin"),
        "extra": str(models / "tiny" / "b.txt"),
    }
    assert records["vggish"]["licence"] == "Apache-2.0" and records["musicnn"]["download_bytes"] == 29_292_476

    status, out, err = coaudio(capsys, "models", "fetch", "tiny", "--from", f"{server.url}/mirror/")
    assert (status, err) == (0, "")
    assert out == f"already installed: tiny in {models / 'tiny'} (--force fetches it again)\n"
    assert coaudio(capsys, "models", "path", "tiny", "--role", "extra")[1] == f"{models / 'tiny' / 'b.txt'}\n"


def test_dir_and_the_environment_from_another_working_directory(tiny, server, tmp_path, capsys, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    status, out, _ = coaudio(
        capsys, "models", "fetch", "tiny", "--from", f"{server.url}/mirror/a.bin", "--dir", "rel"
    )
    assert status == 0 and out == f"installed: tiny in {elsewhere / 'rel' / 'tiny'} (tiny.bin, b.txt)\n"
    assert not (tmp_path / "models").exists()  # --dir wins over $COAUDIO_MODELS
    assert (
        coaudio(capsys, "models", "path", "tiny", "--dir", "rel")[1]
        == f"{elsewhere / 'rel' / 'tiny' / 'tiny.bin'}\n"
    )
    status, out, err = coaudio(capsys, "models", "path", "tiny")  # $COAUDIO_MODELS: not there
    assert status == 1 and not out
    where = f"{tmp_path / 'models'} ({ENV_VAR})"
    assert err == f"error: model 'tiny' is not in {where}: run 'coaudio models fetch tiny'\n"


def test_errors_are_one_line_with_the_usual_status(tiny, server, tmp_path, capsys):
    models = tmp_path / "models"
    status, out, err = coaudio(capsys, "models", "fetch", "nope")
    assert (status, out) == (2, "")
    assert err == (
        "error: Invalid value for 'NAME': unknown model 'nope'; known: musicnn, vggish, tiny "
        "(see 'coaudio models fetch --help')\n"
    )
    status, out, err = coaudio(capsys, "models", "path", "musicnn", "--role", "pca")
    assert status == 2 and "model 'musicnn' has no 'pca' file (it has: weights, licence, notice)" in err

    status, out, err = coaudio(capsys, "models", "fetch", "tiny")  # the registry's URLs are gone
    port = tiny.files[0].urls[0].split(":")[2].split("/")[0]
    assert (status, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith(
        f"error: cannot reach 127.0.0.1:{port}: connection refused; nothing was installed; "
    )
    assert (
        f"download http://127.0.0.1:{port}/gone/a.bin and http://127.0.0.1:{port}/gone/{B_NAME} into" in err
    )
    assert err.endswith(
        "then run 'coaudio models fetch tiny --from FOLDER' "
        f"(it checks the files and installs tiny into {models / 'tiny'})\n"
    )

    server.files["/mirror/a.bin"] = b"tampered"
    status, out, err = coaudio(capsys, "models", "fetch", "tiny", "--from", f"{server.url}/mirror")
    assert (status, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith(
        f"error: {server.url}/mirror/a.bin: checksum mismatch (expected {tiny.files[0].sha256}, got "
    )
    status, out, err = coaudio(capsys, "models", "fetch", "tiny", "--from", tmp_path / "no-such-folder")
    assert status == 1 and err.startswith(
        f"error: {tmp_path / 'no-such-folder'}: no such folder, and not a URL; "
    )
    status, out, err = coaudio(capsys, "models", "path", "tiny")
    assert status == 1 and err.startswith("error: model 'tiny' is not in ")


@pytest.fixture(scope="module")
def wheel():
    return musicnn_wheel()


def test_musicnn_from_a_folder_holding_the_wheel(wheel, tmp_path, capsys):
    pytest.importorskip("coaudio.pretrained.tfbundle")
    models = tmp_path / "models"
    status, out, err = coaudio(capsys, "models", "fetch", "musicnn", "--from", wheel.parent)
    assert (status, err) == (0, "")
    assert (
        out
        == f"installed: musicnn in {models / 'musicnn'} (musicnn.safetensors, LICENSE-musicnn.md, NOTICE)\n"
    )
    with safe_open(models / "musicnn" / "musicnn.safetensors", "np") as f:
        assert len(f.keys()) == 64 and f.metadata()["licence"] == "ISC"
    licence = (models / "musicnn" / "LICENSE-musicnn.md").read_text()
    assert licence.startswith("Copyright (c) Music Technology Group") and "Permission to use" in licence
    assert (wheel.parent / wheel.name).exists()  # the --from folder is left as it was


def test_ctrl_c_during_a_download_leaves_only_a_resumable_partial(wheel, tmp_path):
    """A real `coaudio models fetch` process, interrupted while the server stalls mid-file;
    the same command again resumes with a Range request and installs."""
    pytest.importorskip("coaudio.pretrained.tfbundle")
    models = tmp_path / "models"
    path = f"/files/{wheel.name}"
    env = {**os.environ, "no_proxy": "*", "NO_PROXY": "*"}
    with FileServer({path: wheel.read_bytes()}) as server:
        server.stall_after[path] = 2_500_000
        command = [sys.executable, "-m", "coaudio", "models", "fetch", "musicnn", "--dir", str(models)]
        command += ["--from", f"{server.url}/files/"]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        partial = models / ".downloads" / "musicnn" / f"{wheel.name}.partial"
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size >= 1_000_000) and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 130, err
        assert (out, err) == (
            "",
            "interrupted: musicnn was not installed; run the same command again to resume\n",
        )
        kept = partial.stat().st_size
        assert kept >= 1_000_000 and not (models / "musicnn").exists()
        assert sorted(p.name for p in models.rglob("*") if p.is_file()) == [".musicnn.lock", partial.name]

        server.closing.clear()
        again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(f"installed: musicnn in {models / 'musicnn'}")
        assert server.file_requests(wheel.name)[-1] == f"bytes={kept}-"
    assert not (models / ".downloads").exists()


def test_listing_and_help_never_import_torch(tmp_path):
    """`coaudio models list` answers in a moment: neither it nor --help loads torch."""
    code = (
        "import sys\nfrom coaudio_cli.main import run\n"
        "statuses = [run(['models', 'list']), run(['models', 'fetch', '--help'])]\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', statuses)"
    )
    env = {**os.environ, ENV_VAR: str(tmp_path / "models")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH [0, 0]", done.stdout[-500:] + done.stderr
