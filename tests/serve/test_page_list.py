"""The live page's stream list in a real browser (Debian's headless Chromium, Selenium), as a user
works it: a click held while the list refreshes, the keyboard focus on a stream that ends, an
ended stream clicked, and a page that goes on watching after its server was restarted."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading

import numpy as np
import pytest

from tests.online.helpers import LABELS
from tests.serve import test_page as page
from tests.serve.helpers import pcm_bytes, running_server
from tests.serve.test_page import evidence, focused_listed, listed, text, timeline, wait

# the page tests' fixtures: a tuned checkpoint, headless Chromium, the artefacts folder
files, checkpoint, browser, artifacts = page.files, page.checkpoint, page.browser, page.artifacts

pytestmark = page.pytestmark  # skipped, saying why, without Debian's chromium and its driver

RATE = 16_000
ITEM = "#stream-list button.stream[data-name='{}']"


class Sender(threading.Thread):
    """A client that sends a tone under ``name`` at real time until ``stop`` is set (then ends the
    stream) or the server closes the connection (a server stopped is not an error here)."""

    def __init__(self, url: str, name: str, go: bool = True) -> None:
        super().__init__(daemon=True)
        self.url, self.name = url, name
        self.stop, self.closed, self.go = threading.Event(), threading.Event(), threading.Event()
        if go:
            self.go.set()  # else: declared, and no audio until go is set

    def run(self) -> None:
        asyncio.run(self._send())

    async def _send(self) -> None:
        import websockets

        t = np.arange(RATE // 10) / RATE
        block = pcm_bytes((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None], "s16le")
        declaration = {"name": self.name, "sample_rate": RATE, "format": "s16le", "top_k": len(LABELS)}
        try:
            async with websockets.connect(self.url, max_size=None) as ws:
                await ws.send(json.dumps(declaration))
                reader = asyncio.create_task(_read_all(ws))
                await asyncio.to_thread(self.go.wait, 60)
                while not self.stop.is_set():
                    await ws.send(block)
                    await asyncio.sleep(0.1)
                await ws.send(json.dumps({"end": True}))
                await asyncio.wait_for(reader, 30)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()


async def _read_all(ws) -> None:
    import websockets

    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_held_click_watches_and_the_focus_follows_the_stream_to_ended(
    browser, checkpoint, tmp_path, artifacts
):
    """A press held while the list refreshes still clicks (the pressed element is not replaced);
    when the stream ends, the focus moves with it to its entry under "Ended"; clicking that entry
    says the stream ended (with its hops), not that it is "not live yet"."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    run = running_server(checkpoint, "--db", tmp_path / "h.sqlite", cwd=tmp_path)
    with run as server, evidence(browser, artifacts, "page-list"):
        sender = Sender(server.ws, "kitchen")
        sender.start()
        browser.get(server.url)
        wait(browser, 15, lambda d: "hop" in listed(d, "kitchen"), "kitchen is not listed")
        before = listed(browser, "kitchen")
        meta = browser.find_element(By.CSS_SELECTOR, ITEM.format("kitchen") + " .stream-meta")
        ActionChains(browser).click_and_hold(meta).perform()
        wait(
            browser, 10, lambda d: listed(d, "kitchen") != before, "the list did not refresh during the press"
        )
        ActionChains(browser).release().perform()
        wait(browser, 10, lambda d: text(d, "status") == "watching kitchen", "the held click did not watch")
        assert focused_listed(browser, "kitchen")

        sender.stop.set()  # kitchen ends: live -> ended, a new list entry

        def ended(d) -> bool:  # listed as ended, and no longer as live
            return "ended" in listed(d, "kitchen") and not d.find_elements(
                By.CSS_SELECTOR, "[data-key='live:kitchen']"
            )

        wait(browser, 15, ended, "kitchen is not listed as ended")
        assert focused_listed(browser, "kitchen"), "the focus fell off the list when kitchen ended"
        hops = int(listed(browser, "kitchen").split(" hops")[0].split()[-1])

        browser.find_element(By.CSS_SELECTOR, ITEM.format("kitchen")).click()  # watch it again
        wait(browser, 10, lambda d: "ended" in text(d, "status"), "clicking the ended stream")
        assert text(browser, "status") == "kitchen ended; waiting for it to start again"
        assert text(browser, "hop-count") == str(hops)
        sender.join(30)


def test_a_press_held_while_the_first_label_appears_still_clicks(browser, checkpoint, tmp_path, artifacts):
    """The entry of a stream with no hop yet has no label; the refresh that adds one must keep the
    name the pointer is on."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    with (
        running_server(checkpoint, "--no-db", cwd=tmp_path) as server,
        evidence(browser, artifacts, "page-press"),
    ):
        sender = Sender(server.ws, "quiet", go=False)
        sender.start()
        browser.get(server.url)
        wait(browser, 15, lambda d: listed(d, "quiet").endswith("0 hops"), "quiet is not listed")
        name = browser.find_element(By.CSS_SELECTOR, ITEM.format("quiet") + " .stream-name")
        ActionChains(browser).click_and_hold(name).perform()
        sender.go.set()
        labelled = ITEM.format("quiet") + " .stream-label"
        wait(browser, 15, lambda d: d.find_elements(By.CSS_SELECTOR, labelled), "no label appeared")
        ActionChains(browser).release().perform()
        wait(browser, 10, lambda d: text(d, "status") == "watching quiet", "the held click did not watch")
        sender.stop.set()
        sender.join(30)


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_after_a_restart_the_page_watches_the_same_stream_again(
    browser, checkpoint, tmp_path, artifacts, how
):
    """The server stopped (Ctrl-C) or killed while the page watched: the page says which (a stop is
    no error, also while the list cannot be loaded), and once a server answers at the address
    again it watches the same stream again (and the error of a lost connection goes)."""
    from selenium.webdriver.common.by import By

    port = _free_port()
    first = running_server(checkpoint, "--no-db", cwd=tmp_path, port=port)
    with first as server, evidence(browser, artifacts, f"page-{how}"):
        sender = Sender(server.ws, "radio")
        sender.start()
        browser.get(server.url)
        wait(browser, 15, lambda d: "hop" in listed(d, "radio"), "radio is not listed")
        browser.execute_script(f"document.querySelector(`{ITEM.format('radio')}`).click();")
        wait(browser, 10, lambda d: len(timeline(d)) >= 3, "no hops while watching")
        assert server.stop(signal.SIGINT if how == "stopped" else signal.SIGKILL) in (130, -signal.SIGKILL)
        sender.join(30)
    again = "watching radio again when it is back"
    if how == "stopped":
        wait(
            browser, 10, lambda d: text(d, "status") == f"the server stopped; {again}", "not shown as a stop"
        )
    else:
        wait(browser, 10, lambda d: text(d, "status") == "disconnected", "not shown as lost")
        assert text(browser, "error-text") == f"the connection to the server was lost (code 1006); {again}"
    failed = "could not load the streams"
    wait(browser, 10, lambda d: text(d, "streams-updated") == failed, "the list was not refreshed")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() == (how == "killed"), text(browser, "error-text")

    second = running_server(checkpoint, "--no-db", cwd=tmp_path, port=port)
    with second as server, evidence(browser, artifacts, f"page-{how}-back"):
        sender = Sender(server.ws, "radio")
        sender.start()
        wait(browser, 20, lambda d: text(d, "status") == "watching radio", "not watching radio again")
        wait(browser, 15, lambda d: len(timeline(d)) >= 3, "no hops after the restart")
        assert not browser.find_element(By.ID, "error").is_displayed(), text(browser, "error-text")
        sender.stop.set()
        sender.join(30)
