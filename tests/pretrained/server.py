"""A real HTTP server on 127.0.0.1 for the model store's tests: files with Range support,
connections that break off or stall, and a PEP 503 simple index that pip can install from."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time


class FileServer:
    """Serves ``files`` (URL path -> bytes). ``cut_after[path] = n`` drops the connection
    after n bytes of the next response for that path; ``stall_after[path] = n`` sends n bytes
    and then waits (until closed) without sending more. ``index`` adds ``/simple/<project>/``
    pages linking to every served ``*.whl`` with its sha256."""

    def __init__(self, files: dict[str, bytes], index: bool = False):
        self.files = dict(files)
        self.cut_after: dict[str, int] = {}
        self.stall_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.closing = threading.Event()
        self.index = index
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                if owner.index and self.path.startswith("/simple/"):
                    self._simple(self.path.strip("/").split("/")[1:])
                elif self.path in owner.files:
                    self._file(self.path)
                else:
                    self.send_error(404)

            def _simple(self, parts):
                wheels = {p: d for p, d in owner.files.items() if p.endswith(".whl")}
                if not parts:  # the root: every project
                    names = sorted({p.rsplit("/", 1)[1].split("-")[0] for p in wheels})
                    links = "".join(f'<a href="/simple/{n}/">{n}</a>' for n in names)
                else:
                    links = "".join(
                        f'<a href="{p}#sha256={hashlib.sha256(d).hexdigest()}">{p.rsplit("/", 1)[1]}</a>'
                        for p, d in wheels.items()
                        if p.rsplit("/", 1)[1].split("-")[0] == parts[0]
                    )
                    if not links:
                        self.send_error(404)
                        return
                body = f"<!DOCTYPE html><html><body>{links}</body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _file(self, path):
                body, status = owner.files[path], 200
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in owner.cut_after:
                    self.wfile.write(body[: owner.cut_after.pop(path)])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection breaks off mid-transfer
                elif path in owner.stall_after:
                    self.wfile.write(body[: owner.stall_after.pop(path)])
                    self.wfile.flush()
                    owner.closing.wait(30)  # a server that stops sending
                else:
                    self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def file_requests(self, name: str) -> list[str | None]:
        """The Range headers of the requests for a file called ``name``."""
        return [rng for path, rng in self.requests if path.rsplit("/", 1)[1] == name]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.closing.set()
        time.sleep(0.01)
        self.httpd.shutdown()
        self.httpd.server_close()
