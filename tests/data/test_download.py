"""Downloads against a real HTTP server on 127.0.0.1: resume, checksum, safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading

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

    def __init__(self, payload: bytes, cut_after: int | None = None, honour_range: bool = True):
        self.payload, self.cut_after, self.honour_range = payload, cut_after, honour_range
        self.requests: list[str | None] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
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
                    self.connection.shutdown(2)  # drop the connection mid-transfer
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/genres.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

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
        with pytest.raises(DownloadError, match="run again to resume"):
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


def test_http_errors_are_reported(tmp_path):
    with pytest.raises(DownloadError, match="download interrupted"):
        download("http://127.0.0.1:9/none.tar.gz", tmp_path / "x.tar.gz", timeout=5)


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
        args = [sys.executable, "-m", "coaudio", "data", "download", "gtzan", "--url", server.url,
                "--sha256", digest, "--out", str(tmp_path / "g")]
        first = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert "installed" in first.stdout
        again = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "already installed" in again.stdout
        bad = subprocess.run(args[:-4] + ["--sha256", "0" * 64, "--out", str(tmp_path / "h")],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1 and "checksum mismatch" in bad.stderr
