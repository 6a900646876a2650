"""Run the server: a hub, the app, uvicorn on a socket of our own, pulled sources; stop cleanly.

The socket is bound here (not by uvicorn) so that ``--port 0`` works: the caller learns the
port the system chose before the first request can arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn

from coaudio.online.model import OnlineModel
from coaudio.serve.app import create_app
from coaudio.serve.gate import LOOPBACK_NAMES
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
    drain_timeout_s: float = 15.0  # on stopping: the longest wait for every stream's last hops
    allowed_hosts: tuple[str, ...] = ()  # more names for Host headers (a proxy's) besides loopback's
    allowed_origins: tuple[str, ...] = ()  # other web pages' origins that may open WebSockets


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_host(host: str) -> None:
    """An address or a host name; the common typos get a message that names them."""
    if not host.strip():
        raise ServeError("the address is empty: give one (127.0.0.1: this machine only; 0.0.0.0: all)")
    if host != host.strip() or any(c.isspace() for c in host):
        raise ServeError(f"the address {host!r} has spaces in it")
    if all(part.isdigit() for part in host.split(".")) or ":" in host:  # meant as an IP address
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ServeError(f"{host} is not an IP address") from None


MIN_TOKEN_CHARS = 8


def check_token(token: str | None) -> None:
    """A token travels in a header and in URLs (?token=): printable, no spaces, not trivially short."""
    if token is None:
        return
    if not token.strip():
        raise ServeError(
            f"the token is empty or only spaces: give one of at least {MIN_TOKEN_CHARS} characters"
        )
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in token):
        raise ServeError("the token has spaces or characters other than printable ASCII in it")
    if len(token) < MIN_TOKEN_CHARS:
        raise ServeError(f"the token is {len(token)} characters long: give at least {MIN_TOKEN_CHARS}")


def check_exposure(host: str, token: str | None) -> None:
    """Loopback is open to this machine's users only; anything wider needs a token."""
    check_host(host)
    check_token(token)
    if not is_loopback(host) and not token:
        raise ServeError(
            f"{host} is reachable from other machines: give a --token (or set COAUDIO_TOKEN); "
            "clients then send 'Authorization: Bearer TOKEN' (or ?token=TOKEN)"
        )


def allowed_hosts(options: ServeOptions) -> set[str] | None:
    """The Host names a loopback server answers (a DNS-rebinding page's requests carry
    another); None (any) on a wider address, where the token guards."""
    if not is_loopback(options.host):
        return set(options.allowed_hosts) or None
    return set(LOOPBACK_NAMES) | {options.host.lower()} | set(options.allowed_hosts)


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


class _Uvicorn(uvicorn.Server):
    """uvicorn's server with a stop of our own: on the first SIGINT or SIGTERM every stream
    and watcher is drained (:mod:`coaudio.serve.drain`) before uvicorn closes what is left; a
    second Ctrl-C skips the wait. The signal is not re-raised when :meth:`run` returns (uvicorn
    would): :func:`serve` turns it into KeyboardInterrupt or :class:`Terminated` itself, so the
    exit status never depends on where the re-raised signal happens to land."""

    def __init__(self, config, drain, sources, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.drain, self.sources, self.drain_timeout_s = drain, sources, drain_timeout_s
        self.signals: list[int] = []

    def handle_exit(self, sig, frame) -> None:
        self.signals.append(sig)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only (an in-process test server)
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:
            server.close()  # no new connections while the old ones finish
        self.drain.stop()
        loop = asyncio.get_running_loop()
        # pulled sources end their streams too, so that their watchers get the last hops
        stopping = [loop.run_in_executor(None, source.stop) for source in self.sources]
        left = await self.drain.wait(self.drain_timeout_s, give_up=lambda: self.force_exit)
        if left:
            log.warning("%d connection(s) not finished in %g s; closing them", left, self.drain_timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*stopping), self.drain_timeout_s)
        await super().shutdown(sockets)


@dataclass
class Running:
    """A server ready to run: :meth:`uvicorn.Server.run` on ``sock`` serves ``url``."""

    server: object  # uvicorn.Server
    hub: Hub
    sock: socket.socket
    url: str


def prepare(online: OnlineModel, options: ServeOptions, history=None) -> Running:
    """Bind the socket, start the hub, build the app: everything but serving."""
    check_exposure(options.host, options.token)
    sock = bind(options.host, options.port)
    hub = Hub(online, options.limits, history, engine=make_engine(online, options.engine)).start()
    app = create_app(
        hub, history, options.token, options.limits, allowed_hosts(options), options.allowed_origins
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # uvicorn's records go through the caller's logging, like every other one
        ws_max_size=2 * options.limits.max_message_bytes,  # ours is checked first, with a JSON error
        ws_per_message_deflate=False,  # PCM hardly compresses and JSON hops are small: ~10% of CPU saved
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    server = _Uvicorn(config, app.state.drain, options.sources, options.drain_timeout_s)
    return Running(server, hub, sock, url)


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
        if running.server.signals:
            raise KeyboardInterrupt() if running.server.signals[0] == signal.SIGINT else Terminated()
    finally:
        for source in options.sources:
            source.stop()
        running.hub.stop()
        if history is not None:
            history.close()
        running.sock.close()
        if main:
            signal.signal(signal.SIGTERM, previous)
