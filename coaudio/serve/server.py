"""Run the server: a hub, the app, uvicorn on a socket of our own, pulled sources; stop cleanly.

The socket is bound here (not by uvicorn) so that ``--port 0`` works: the caller learns the
port the system chose before the first request can arrive.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from coaudio.online.model import OnlineModel
from coaudio.serve.app import create_app
from coaudio.serve.hub import Hub
from coaudio.serve.protocol import Limits
from coaudio.serve.regular import make_engine

log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """The server cannot start; the message says why and what to do."""


class Terminated(Exception):
    """SIGTERM arrived: the server stopped as cleanly as after Ctrl-C (streams flushed, history
    written). Without it uvicorn re-raises SIGTERM after its shutdown with the default action,
    which kills the process before the history's last rows are written."""


def _terminate(signum, frame) -> None:
    raise Terminated()


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8750
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    sources: list = field(default_factory=list)  # coaudio.serve.sources.PulledSource
    engine: str = "continual"  # or "regular", "regular-cached" (coaudio.serve.regular; benchmarks)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_exposure(host: str, token: str | None) -> None:
    """Loopback is open to this machine's users only; anything wider needs a token."""
    if not is_loopback(host) and not token:
        raise ServeError(
            f"--host {host} is reachable from other machines: give a --token (or set COAUDIO_TOKEN); "
            "clients then send 'Authorization: Bearer TOKEN' (or ?token=TOKEN)"
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


@dataclass
class Running:
    """A server ready to run: :meth:`uvicorn.Server.run` on ``sock`` serves ``url``."""

    server: object  # uvicorn.Server
    hub: Hub
    sock: socket.socket
    url: str


def prepare(online: OnlineModel, options: ServeOptions, history=None) -> Running:
    """Bind the socket, start the hub, build the app: everything but serving."""
    import uvicorn

    check_exposure(options.host, options.token)
    sock = bind(options.host, options.port)
    hub = Hub(online, options.limits, history, engine=make_engine(online, options.engine)).start()
    app = create_app(hub, history, options.token, options.limits)
    config = uvicorn.Config(
        app,
        log_level="warning",
        ws_max_size=2 * options.limits.max_message_bytes,  # ours is checked first, with a JSON error
        ws_per_message_deflate=False,  # PCM hardly compresses and JSON hops are small: ~10% of CPU saved
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    return Running(uvicorn.Server(config), hub, sock, url)


def serve(
    online: OnlineModel,
    options: ServeOptions,
    history=None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT (KeyboardInterrupt) or SIGTERM (:class:`Terminated`), raised after
    uvicorn's clean shutdown; either way every stream is flushed and the history closed first."""
    running = prepare(online, options, history)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        for source in options.sources:
            source.start(running.hub)
        if on_ready:
            on_ready(running.url)
        running.server.run(sockets=[running.sock])
    finally:
        for source in options.sources:
            source.stop()
        running.hub.stop()
        if history is not None:
            history.close()
        running.sock.close()
        if main:
            signal.signal(signal.SIGTERM, previous)
