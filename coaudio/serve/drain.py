"""A clean stop for WebSocket clients: each stream gets its last hops and its summary first.

uvicorn's own shutdown closes every WebSocket at once (close code 1012) and leaves the
application a few seconds to notice; a client would lose the hops of the audio it had sent and
never see its summary. So the server drains first: every connection's reading half is
cancelled (no more audio is taken), the hub flushes what each stream sent, the connection sends
its last hops and ``{"type": "end", ..., "summary": {"reason": "server stopping"}}`` and closes
with 1001 (going away). Only then does uvicorn's shutdown run, for whatever did not finish in
time.
"""

from __future__ import annotations

import asyncio
import time

GOING_AWAY = 1001  # the WebSocket close code for "the server is going down"
STOPPING_REASON = "server stopping"


class Drain:
    """Which connections are reading, and whether the server is stopping; event loop only."""

    def __init__(self) -> None:
        self.stopping = False
        self._readers: set[asyncio.Task] = set()
        self._connections = 0

    def reading(self, task: asyncio.Task) -> None:
        """``task`` reads a client's messages; stopping cancels it."""
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        if self.stopping:
            task.cancel()

    def stopped_reading(self, task: asyncio.Task) -> bool:
        """True when ``task`` (a reader that ended) was cancelled by :meth:`stop`."""
        return task.cancelled() and self.stopping

    def opened(self) -> None:
        self._connections += 1

    def closed(self) -> None:
        self._connections -= 1

    def stop(self) -> None:
        """Take no more audio from anyone; each connection finishes its stream and closes."""
        self.stopping = True
        for task in list(self._readers):
            task.cancel()

    async def wait(self, timeout_s: float, give_up=lambda: False) -> int:
        """Wait until every connection closed, ``timeout_s`` passed or ``give_up()`` is true;
        the number of connections still open."""
        deadline = time.monotonic() + timeout_s
        while self._connections > 0 and time.monotonic() < deadline and not give_up():
            await asyncio.sleep(0.02)
        return self._connections
