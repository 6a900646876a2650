"""Downloads against a real HTTP server on 127.0.0.1: resume, checksum, safe extraction, and
telling a server that cannot be reached from a download that broke off."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import random
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from coaudio.data.download import MARKER, DownloadError, download, extract, fetch


def _archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Server:
    """Serves one payload with Range support; ``cut_after`` truncates the first response."""

    def __init__(
        self, payload: bytes, cut_after: int | None = None, honour_range: bool = True, reset: bool = False
    ):
        self.payload, self.cut_after, self.honour_range, self.reset = payload, cut_after, honour_range, reset
        self.requests: list[str | None] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/genres.tar.gz"):
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                owner.requests.append(rng)
                body, status = owner.payload, 200
                if rng and owner.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut_after is not None:
                    body, owner.cut_after = body[: owner.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    if owner.reset:  # abort with a TCP reset once the client has read: its next read fails
                        time.sleep(0.3)
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        self.connection.close()
                    else:
                        self.connection.shutdown(2)  # drop the connection mid-transfer
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/genres.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()  # quick shutdown

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload():
    data = _archive({"genres/blues/blues.00000.au": b"a" * 300_000, "genres/rock/rock.00000.au": b"b" * 5})
    return data, hashlib.sha256(data).hexdigest()


def test_fetch_is_verified_and_idempotent(tmp_path, payload):
    data, digest = payload
    with _Server(data) as server:
        assert fetch(server.url, tmp_path / "gtzan", digest) is True
        assert (tmp_path / "gtzan" / "genres" / "blues" / "blues.00000.au").read_bytes() == b"a" * 300_000
        assert (tmp_path / "gtzan" / MARKER).exists()
        assert fetch(server.url, tmp_path / "gtzan", digest) is False  # nothing fetched again
        assert len(server.requests) == 1
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_truncated_download_resumes_with_a_range_request(tmp_path, payload):
    data, digest = payload
    with _Server(data, cut_after=len(data) // 3) as server:
        with pytest.raises(
            DownloadError,
            match=rf"download interrupted after {len(data) // 3:,} bytes of "
            rf"{len(data):,} bytes; run again to resume",
        ):
            download(server.url, tmp_path / "a.tar.gz", digest)
        part = tmp_path / "a.tar.gz.partial"
        assert 0 < part.stat().st_size < len(data)
        download(server.url, tmp_path / "a.tar.gz", digest)
        assert (tmp_path / "a.tar.gz").read_bytes() == data
        assert server.requests[-1] == f"bytes={len(data) // 3}-"


def test_server_without_range_support_restarts(tmp_path, payload):
    data, digest = payload
    (tmp_path / "a.tar.gz.partial").write_bytes(data[:1000])
    with _Server(data, honour_range=False) as server:
        download(server.url, tmp_path / "a.tar.gz", digest)
        assert (tmp_path / "a.tar.gz").read_bytes() == data


def test_partial_file_that_is_already_complete(tmp_path, payload):
    data, digest = payload
    (tmp_path / "a.tar.gz.partial").write_bytes(data)  # the server will answer 416
    with _Server(data) as server:
        download(server.url, tmp_path / "a.tar.gz", digest)
        assert (tmp_path / "a.tar.gz").read_bytes() == data


def test_bad_checksum_removes_the_file_and_installs_nothing(tmp_path, payload):
    data, _ = payload
    with _Server(data) as server:
        with pytest.raises(DownloadError, match="checksum mismatch"):
            fetch(server.url, tmp_path / "gtzan", "0" * 64)
        assert not (tmp_path / "gtzan" / MARKER).exists()
        assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*"))


def test_reset_connection_keeps_what_arrived_and_resumes(tmp_path):
    data = random.Random(0).randbytes(2_500_000)  # over one 1 MB read, so some of it is kept
    digest = hashlib.sha256(data).hexdigest()
    with _Server(data, cut_after=1_500_000, reset=True) as server:
        with pytest.raises(
            DownloadError,
            match=r"download interrupted after 1\.\d MB of 2\.5 MB \(.+\); "
            "run again to resume",
        ):
            download(server.url, tmp_path / "a.tar.gz", digest)
        kept = (tmp_path / "a.tar.gz.partial").stat().st_size
        assert 1_000_000 <= kept < len(data)
        download(server.url, tmp_path / "a.tar.gz", digest)
        assert (tmp_path / "a.tar.gz").read_bytes() == data and server.requests[-1] == f"bytes={kept}-"


def test_reset_before_any_byte_is_not_an_interruption(tmp_path, payload):
    data, digest = payload
    with _Server(data, cut_after=0, reset=True) as server:
        with pytest.raises(DownloadError, match=r"^cannot reach 127\.0\.0\.1:\d+: connection reset by peer$"):
            download(server.url, tmp_path / "a.tar.gz", digest)


@pytest.fixture
def direct(monkeypatch):
    """No proxy, so these addresses are tried from here and nothing else is contacted."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


UNRESOLVABLE = "http://coaudio-test.invalid/genres.tar.gz"  # .invalid never resolves (RFC 2606)


def test_a_name_that_does_not_resolve_is_not_an_interruption(tmp_path, direct):
    with pytest.raises(DownloadError) as caught:
        download(UNRESOLVABLE, tmp_path / "x.tar.gz", timeout=5)
    assert str(caught.value) == (
        "cannot reach coaudio-test.invalid: the name could not be resolved (no network, or a wrong URL?)"
    )
    assert not list(tmp_path.iterdir())  # no empty .partial to "resume"


def test_a_refused_connection_is_not_an_interruption(tmp_path, direct):
    port = _closed_port()
    with pytest.raises(DownloadError) as caught:
        download(f"http://127.0.0.1:{port}/genres.tar.gz", tmp_path / "x.tar.gz", timeout=5)
    assert str(caught.value) == f"cannot reach 127.0.0.1:{port}: connection refused"
    assert not list(tmp_path.iterdir())


def test_http_errors_and_non_urls_are_reported(tmp_path, payload):
    with _Server(payload[0]) as server:
        with pytest.raises(DownloadError, match=r"missing.tar.gz: HTTP 404 Not Found$"):
            download(server.url.replace("genres", "missing"), tmp_path / "x.tar.gz", timeout=5)
    with pytest.raises(DownloadError, match=r"^genres.tar.gz: not a usable URL"):
        download("genres.tar.gz", tmp_path / "x.tar.gz")


def _data_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "no_proxy": "*", "NO_PROXY": "*"}
    return subprocess.run(
        [sys.executable, "-m", "coaudio", "data", *args], capture_output=True, text=True, timeout=120, env=env
    )


def _one_line_error(done: subprocess.CompletedProcess, message: str, status: int = 1) -> None:
    assert done.returncode == status, done.stderr
    assert done.stderr == f"error: {message}\n" and not done.stdout
    assert "Traceback" not in done.stderr


def test_download_command_errors_are_one_line(tmp_path):
    out = str(tmp_path / "g")
    _one_line_error(
        _data_cli("download", "gtzan", "--out", out, "--url", UNRESOLVABLE),
        "cannot reach coaudio-test.invalid: the name could not be resolved (no network, or a wrong URL?)",
    )
    port = _closed_port()
    _one_line_error(
        _data_cli("download", "gtzan", "--out", out, "--url", f"http://127.0.0.1:{port}/g.tar.gz"),
        f"cannot reach 127.0.0.1:{port}: connection refused",
    )
    _one_line_error(
        _data_cli("download", "foo", "--out", out),  # a usage error: status 2
        "Invalid value for 'DATASET': unknown dataset 'foo'; known: gtzan "
        "(see 'coaudio data download --help')",
        status=2,
    )


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt"])
def test_path_traversal_is_refused(tmp_path, name):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_archive({"fine.txt": b"ok", name: b"pwned"}))
    with pytest.raises(DownloadError, match="refusing archive member"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out").exists()


def test_links_are_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "l.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="not a plain file"):
        extract(tmp_path / "l.tar.gz", tmp_path / "out")


def test_download_command(tmp_path, payload):
    import subprocess
    import sys

    data, digest = payload
    with _Server(data) as server:
        args = [
            sys.executable,
            "-m",
            "coaudio",
            "data",
            "download",
            "gtzan",
            "--url",
            server.url,
            "--sha256",
            digest,
            "--out",
            str(tmp_path / "g"),
        ]
        first = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert "installed" in first.stdout
        again = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "already installed" in again.stdout
        bad = subprocess.run(
            args[:-4] + ["--sha256", "0" * 64, "--out", str(tmp_path / "h")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert bad.returncode == 1 and "checksum mismatch" in bad.stderr
