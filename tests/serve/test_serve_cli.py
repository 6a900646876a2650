"""``coaudio serve`` as a user runs it: from another folder, bad arguments, Ctrl-C, SIGTERM, its history."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.online.helpers import make_checkpoint, tone_mix
from tests.serve.helpers import coaudio_serve_exit, hops, pcm_bytes, running_server, send_stream


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("cli") / "m.safetensors", hop_frames=20, window=6)


def test_a_missing_checkpoint_is_one_line(tmp_path):
    code, stderr = coaudio_serve_exit(tmp_path / "none.safetensors", "--no-db")
    assert code == 1 and "no such checkpoint" in stderr and "Traceback" not in stderr


def test_a_port_in_use_is_one_line(checkpoint):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, stderr = coaudio_serve_exit(checkpoint, "--no-db", "--port", taken.getsockname()[1])
    assert code == 1 and "cannot listen on 127.0.0.1:" in stderr and "Traceback" not in stderr


def test_db_and_no_db_exclude_each_other(checkpoint, tmp_path):
    code, stderr = coaudio_serve_exit(checkpoint, "--no-db", "--db", tmp_path / "h.sqlite")
    assert code == 2 and "--db or --no-db" in stderr


def test_history_of_several_clients_from_another_folder(checkpoint, tmp_path):
    db = tmp_path / "h.sqlite"
    with running_server(checkpoint, "--db", db, cwd=tmp_path) as server:

        async def clients():
            audio = [pcm_bytes(tone_mix(2.0 + i, 16_000, seed=i), "s16le") for i in range(2)]
            return await asyncio.gather(
                *(send_stream(server.ws, f"c{i}", a, 16_000, seed=i) for i, a in enumerate(audio))
            )

        results = asyncio.run(clients())
        api = json.load(urllib.request.urlopen(server.url + "api/history?stream=c1", timeout=10))
        csv = urllib.request.urlopen(server.url + "api/history?format=csv", timeout=10).read().decode()
        streams = json.load(urllib.request.urlopen(server.url + "api/streams", timeout=10))["streams"]
    assert [r["hop"] for r in api["rows"]] == [h["hop"] for h in hops(results[1])]
    assert csv.count("\n") == 1 + sum(len(hops(r)) for r in results)
    assert {s["name"] for s in streams} == {"c0", "c1"} and not any(s["live"] for s in streams)
    assert set(streams[0]) >= {"name", "kind", "source", "started", "ended", "hops", "label", "time", "live"}
    rows = _history_rows(db, "--stream", "c0")
    assert [r["label"] for r in rows] == [h["label"] for h in hops(results[0])]


def _history_rows(db, *args) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "history", str(db), "--format", "jsonl", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_on_every_address_the_banner_says_what_to_open_and_health_where_the_model_is(checkpoint):
    token = "a-token-for-the-test"
    options = ["--no-db", "--host", "0.0.0.0"]
    env = {"COAUDIO_TOKEN": token}
    with running_server(checkpoint.name, *options, cwd=checkpoint.parent, env=env) as server:
        port = server.url.rsplit(":", 1)[1].rstrip("/")
        bearer = {"Authorization": f"Bearer {token}"}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers=bearer)
        health = json.load(urllib.request.urlopen(request, timeout=10))
    assert f"open http://THIS-MACHINE:{port}/ (this machine's name or address)" in server.stderr
    assert f"open http://THIS-MACHINE:{port}/?token=YOUR_TOKEN" in server.stderr
    assert token not in server.stderr
    assert health["model"]["source"] == str(checkpoint)  # given relative, shown where it is
