"""The live page of ``coaudio serve`` in a real browser: Debian's headless Chromium, driven by
Selenium, with a WAV file as its microphone (Chromium's fake capture device).

The checkpoint is a small random-weight model whose head is set so that a steady tone is
clearly ``drone`` and silence clearly ``chimes``: a label that survives the browser's path
(fake capture -> AudioContext rate -> f32le over the WebSocket -> the server's resampler) and
still depends on the sound. What the page must show is what ``coaudio stream`` says for the
same file.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tests.online.helpers import LABELS, batch_probs, hops_of, make_checkpoint
from tests.serve.helpers import pcm_bytes, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="the page test needs Debian's chromium and chromium-driver "
    "(/usr/bin/chromium, /usr/bin/chromedriver): apt-get install chromium chromium-driver",
)

REPO = Path(__file__).resolve().parents[2]
TONE, QUIET = "drone", "chimes"  # what the tuned head says for a tone and for silence
HOP_FRAMES, WINDOW = 20, 6  # 0.2 s hops; the first hop ends after 0.975 s of audio
HEAD_SCALE = 3.0  # logit per unit of the head's tone-vs-silence direction
MARGIN = 0.5  # the expected label leads the runner-up by this much in coaudio stream's output
LABEL_WITHIN_S = 2.0  # audio the page may take to show the expected label
WALL_S = 20.0  # wall clock from the click to the label: startup and a slow, busy CI machine
RATE = 48_000  # the WAV's rate (the browser resamples it to its AudioContext's)


# ---- fixtures ---------------------------------------------------------------------------------


def _sine(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tone (long enough that the fake microphone does not loop during a test) and silence."""
    folder = tmp_path_factory.mktemp("page")
    soundfile.write(folder / "tone.wav", _sine(12.0, RATE), RATE, subtype="PCM_16")
    soundfile.write(folder / "silence.wav", np.zeros(4 * RATE, np.float32), RATE, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def checkpoint(files):
    path = make_checkpoint(files / "m.safetensors", hop_frames=HOP_FRAMES, window=WINDOW)
    _tune_head(path, files / "tone.wav", files / "silence.wav")
    return path


def _tune_head(path: Path, tone: Path, silence: Path) -> None:
    """Point the head's TONE row along (tone - silence) of the features the head sees, QUIET
    the other way, the rest flat: a clear label for either sound from the same random encoder."""
    from coaudio.audio import read_audio
    from coaudio.features.logmel import log_mel, patches
    from coaudio.models.checkpoint import load_checkpoint, save_checkpoint

    model, labels, info = load_checkpoint(path)
    tone_x, quiet_x = (
        _head_inputs(model, patches(log_mel(read_audio(f)), HOP_FRAMES)) for f in (tone, silence)
    )
    direction = tone_x.mean(0) - quiet_x.mean(0)
    direction /= direction.norm()
    middle = float(direction @ (tone_x.mean(0) + quiet_x.mean(0)) / 2)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 0.0, 0.6, 0.3, -0.2]))  # the others: a visible spread
        for label, sign in ((TONE, 1.0), (QUIET, -1.0)):
            model.head.weight[labels.index(label)] = sign * HEAD_SCALE * direction
            model.head.bias[labels.index(label)] = -sign * HEAD_SCALE * middle
    save_checkpoint(path, model, labels, info)


def _head_inputs(model, tokens: torch.Tensor) -> torch.Tensor:
    """``(hops, D)``: what the head gets at every hop (the window ending there)."""
    seen = []
    hook = model.head.register_forward_pre_hook(lambda module, args: seen.append(args[0][0]))
    with torch.inference_mode():
        for k in range(tokens.shape[0]):
            first = max(0, k - WINDOW + 1)
            model(tokens[None, first : k + 1], start=first)
    hook.remove()
    return torch.stack(seen)


@pytest.fixture(scope="module")
def expected(checkpoint, files):
    """``coaudio stream``'s hops for the tone: every one TONE, by a clear margin (and silence is
    not TONE), else the browser's resampling could tip a label and the test would be flaky."""
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "stream", str(checkpoint), str(files / "tone.wav"), "--jsonl"]
        + ["--top-k", str(len(LABELS))],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    hops = hops_of(done.stdout)
    assert hops and all(h["label"] == TONE for h in hops)
    assert min(h["top"][0]["p"] - h["top"][1]["p"] for h in hops) > MARGIN
    quiet = batch_probs(checkpoint, files / "silence.wav").argmax(dim=1)
    assert {LABELS[i] for i in quiet.tolist()} == {QUIET}
    return hops


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    with running_server(checkpoint, "--no-db", cwd=tmp_path_factory.mktemp("cwd")) as server:
        yield server


@pytest.fixture(scope="module")
def artifacts():
    folder = Path(os.environ.get("COAUDIO_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(files, tmp_path):
    """Headless Chromium whose microphone plays tone.wav; nothing fetched from the network
    (Service with a path: Selenium Manager is never run)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={files / 'tone.wav'}",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


# ---- helpers ----------------------------------------------------------------------------------


@contextmanager
def evidence(driver, artifacts: Path, name: str):
    """On a failure: the page as it was and the browser's console, beside the other artefacts."""
    try:
        yield
    except BaseException:
        driver.save_screenshot(str(artifacts / f"{name}-failed.png"))
        console = [f"{e['level']} {e['message']}" for e in driver.get_log("browser")]
        (artifacts / f"{name}-console.log").write_text("\n".join(console) + "\n")
        raise


def wait(driver, seconds: float, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition, message)


def text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


LISTED = "document.querySelector(`#stream-list button.stream[data-name='${CSS.escape(arguments[0])}']`)"


def listed(driver, name: str) -> str:
    """What the stream list says of ``name`` ("" while it is not listed), read in one script: the
    item may change between two WebDriver calls."""
    return words(driver.execute_script(f"const b = {LISTED}; return b ? b.innerText : '';", name))


def tag_listed(driver, name: str) -> None:
    """Marks ``name``'s list button (a property, not an attribute), for :func:`same_listed`."""
    driver.execute_script(f"{LISTED}.coaudioTag = true;", name)


def same_listed(driver, name: str) -> bool:
    """Whether ``name``'s list button is still the element :func:`tag_listed` marked: refreshes and
    hops change its text in place (focus, hover and a click in progress survive)."""
    return driver.execute_script(f"const b = {LISTED}; return Boolean(b && b.coaudioTag);", name)


def focused_listed(driver, name: str) -> bool:
    return driver.execute_script(f"return document.activeElement === {LISTED};", name)


def words(shown: str) -> str:
    """Text as read: one space between words (no-break spaces, lines that wrapped)."""
    return " ".join(shown.replace("\xa0", " ").split())


def open_page(driver, server) -> None:

    driver.get(server.url)
    wait(driver, 15, labels_shown, "no labels in the legend")


def labels_shown(driver) -> bool:
    """The page has the model's labels (from /health): its legend has one entry per label."""
    from selenium.webdriver.common.by import By

    return len(driver.find_elements(By.CSS_SELECTOR, "#legend li")) == len(LABELS)


def timeline(driver) -> list[dict]:
    """The page's timeline cells, oldest first: hop, end_s, label."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#timeline .cell')].map(c => "
        "({hop: +c.dataset.hop, end_s: +c.dataset.endS, label: c.dataset.label, title: c.title}));"
    )


def bright_fraction(driver) -> float:
    """The share of the spectrogram's pixels well above its background (the canvas's own pixels)."""
    return driver.execute_script(
        "const c = document.getElementById('spectrogram');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 150) n++;"
        "return n / (c.width * c.height);"
    )


def console_errors(driver) -> list[str]:
    """The browser console's errors so far (a script exception, a failed request)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def check_now(driver) -> str:
    """The current label, its confidence and the bars agree (read at one moment: hops keep
    coming); one bar per label. The current label."""
    now = driver.execute_script(
        "const $ = (id) => document.getElementById(id);"
        "return {label: $('current-label').textContent, confidence: $('current-confidence').textContent,"
        "bars: [...document.querySelectorAll('#bars .bar')].map(b => ({label: b.dataset.label,"
        "top: b.classList.contains('top'), value: b.querySelector('.bar-value').textContent}))};"
    )
    assert [bar["label"] for bar in now["bars"]] == LABELS
    assert [(bar["label"], bar["value"]) for bar in now["bars"] if bar["top"]] == [
        (now["label"], now["confidence"])
    ]
    assert all(bar["value"].endswith("%") for bar in now["bars"])
    return now["label"]


# ---- the tests --------------------------------------------------------------------------------


def test_microphone_shows_the_label_coaudio_stream_gives(browser, server, expected, artifacts):
    from selenium.webdriver.common.by import By

    open_page(browser, server)
    with evidence(browser, artifacts, "page-mic"):
        assert browser.find_element(By.ID, "mic-stop").get_attribute("disabled")
        browser.find_element(By.ID, "mic-start").click()
        clicked = time.monotonic()
        wait(browser, WALL_S, lambda d: text(d, "current-label") == TONE, f"no {TONE} within {WALL_S} s")
        wall_s = time.monotonic() - clicked

        cells = timeline(browser)
        first = next(c for c in cells if c["label"] == TONE)
        assert first["end_s"] <= LABEL_WITHIN_S, f"{TONE} first after {first['end_s']} s of audio"
        assert expected[first["hop"]]["end_s"] == first["end_s"]  # the same hop grid as coaudio stream
        assert expected[first["hop"]]["label"] == TONE
        assert TONE in first["title"] and "%" in first["title"]

        wait(browser, 10, lambda d: len(timeline(d)) >= 8, "fewer than 8 hops")
        assert text(browser, "status").startswith("streaming the microphone as browser-")
        assert browser.find_element(By.ID, "status").get_attribute("data-state") == "live"
        assert "ms" in text(browser, "latency")
        check_now(browser)
        assert bright_fraction(browser) > 0.005, "the spectrogram is blank"
        assert not browser.find_element(By.ID, "error").is_displayed()
        browser.save_screenshot(str(artifacts / "page-mic.png"))

        browser.find_element(By.ID, "mic-stop").click()
        wait(browser, 20, lambda d: d.find_element(By.ID, "summary").is_displayed(), "no summary")
        assert "ended" in text(browser, "summary")
        wait(browser, 10, lambda d: text(d, "status") == "microphone stream ended", "not ended")
        assert not browser.find_element(By.ID, "mic-start").get_attribute("disabled")
        assert not console_errors(browser)
    _record(artifacts, "mic", label_audio_s=first["end_s"], label_wall_s=round(wall_s, 3))


def test_a_stream_from_python_is_listed_and_watched(browser, server, expected, artifacts):
    from selenium.webdriver.common.by import By

    rate = 16_000
    segments = [_sine(2.4, rate), np.zeros(int(2.4 * rate), np.float32)] * 3  # TONE, QUIET, ...
    audio = np.concatenate([_sine(1.0, rate), *segments])
    client = PacedClient(server.ws, "kitchen", pcm_bytes(audio[:, None], "s16le"), rate)
    open_page(browser, server)
    with evidence(browser, artifacts, "page-watch"):
        client.start()
        item = "#stream-list button.stream[data-name='kitchen']"
        # its first second made one hop before the page watches: one, in the singular
        one_hop = lambda d: re.search(r"\b1 hop$", listed(d, "kitchen"))  # noqa: E731
        wait(browser, 15, one_hop, f"kitchen is not listed with '1 hop': {listed(browser, 'kitchen')!r}")
        assert words(text(browser, "streams-updated")).endswith(" · 1 live stream")
        browser.find_element(By.CSS_SELECTOR, item).click()
        wait(browser, 10, lambda d: text(d, "status") == "watching kitchen", "not watching")
        tag_listed(browser, "kitchen")
        assert text(browser, "hop-count") == "1"  # the stream's own count, not the hops seen here
        assert words(text(browser, "model")) == "5 labels · hop 0.2 s · window 6 hops · learned front end"
        client.watched.set()  # now the rest of the audio, paced

        wait(browser, 30, lambda d: len(timeline(d)) >= 45, "fewer than 45 hops")
        # every hop and refresh updated the item in place: the clicked button keeps the focus
        assert same_listed(browser, "kitchen") and focused_listed(browser, "kitchen")
        browser.save_screenshot(str(artifacts / "page-watch.png"))
        wait(browser, 30, lambda d: d.find_element(By.ID, "summary").is_displayed(), "no summary")
        client.join(30)
        sent = {h["hop"]: h for h in client.messages if h["type"] == "hop"}
        cells = timeline(browser)
        assert len(cells) >= 0.8 * len(sent)
        assert all(sent[c["hop"]]["label"] == c["label"] for c in cells)  # the page shows the stream's hops
        assert {TONE, QUIET} <= {c["label"] for c in cells}  # (a hop across a change may be a third)
        assert check_now(browser) == sent[max(sent)]["label"]
        assert bright_fraction(browser) > 0.005, "the spectrogram is blank"
        summary = next(m["summary"] for m in client.messages if m["type"] == "end")
        assert f"{summary['hops']} hops" in text(browser, "summary")
        assert text(browser, "hop-count") == str(summary["hops"]) == str(max(sent) + 1)
        assert text(browser, "status") == "kitchen ended; waiting for it to start again"
        assert not browser.find_element(By.ID, "error").is_displayed()
        assert not console_errors(browser)
    _record(artifacts, "watch", hops_sent=len(sent), hops_shown=len(cells))


def test_the_token_in_the_page_address_reaches_the_api_and_the_websocket(
    browser, checkpoint, tmp_path, artifacts
):
    from selenium.webdriver.common.by import By

    guarded = running_server(checkpoint, "--no-db", "--token", "s3cret-token", cwd=tmp_path)
    with guarded as server, evidence(browser, artifacts, "page-token"):
        browser.get(server.url + "?token=s3cret-token")
        wait(browser, 15, labels_shown, "no labels: /health refused?")
        wait(browser, 15, lambda d: text(d, "streams-updated").startswith("updated"), "no /api/streams")
        browser.find_element(By.ID, "mic-start").click()
        wait(browser, WALL_S, lambda d: text(d, "current-label") == TONE, "no hops over /ws?token=")
        assert not browser.find_element(By.ID, "error").is_displayed()
        assert not console_errors(browser)


def test_a_pulled_source_that_is_down_is_listed_with_the_reason(browser, checkpoint, tmp_path, artifacts):
    """A ``--source`` whose URL is refused has no stream to list: the page lists it from /health
    as down, with ffmpeg's reason and the wait, instead of "No live streams" alone."""
    from tests.serve.test_sources_helpers import FFMPEG, closed_port

    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    url = f"http://127.0.0.1:{closed_port()}/live"
    env = {"COAUDIO_SOURCE_BACKOFF_S": "30"}  # one drop, then a long wait: a steady state to read
    radio = running_server(checkpoint, "--no-db", "--source", f"radio={url}", cwd=tmp_path, env=env)
    with radio as server, evidence(browser, artifacts, "page-source-down"):
        browser.get(server.url)
        wait(browser, 15, lambda d: "Connection refused" in listed(d, "radio"), "radio is not listed as down")
        shown = listed(browser, "radio")
        assert shown.startswith("radio down url") and url in shown and "1 drop · retry in" in shown, shown
        tag_listed(browser, "radio")  # the next refresh changes the wait: the text, not the element
        wait(browser, 10, lambda d: listed(d, "radio") not in ("", shown), "the wait is not refreshed")
        assert same_listed(browser, "radio"), "a refresh replaced the list item"
        assert words(text(browser, "streams-updated")).endswith(" · 0 live streams")
        assert not console_errors(browser)
        browser.save_screenshot(str(artifacts / "page-source-down.png"))


def test_a_session_its_server_did_not_end_is_listed_as_ended_by_a_crash(
    browser, checkpoint, tmp_path, artifacts
):
    """A history whose server died with a stream open: the next server closes the session as
    ``ended_by: crash`` and the page says so; a stream its server ended says nothing of a crash."""
    from tests.serve.test_history_sessions import _schema_1_file

    db = tmp_path / "history.sqlite"
    _schema_1_file(db)  # 'done' ended by its server, 'left' never ended (its server was killed)
    with (
        running_server(checkpoint, "--db", db, cwd=tmp_path) as server,
        evidence(browser, artifacts, "page-crash"),
    ):
        browser.get(server.url)
        wait(browser, 15, lambda d: listed(d, "left") and listed(d, "done"), "the history is not listed")
        assert listed(browser, "left").endswith("(server crashed)"), listed(browser, "left")
        assert "crash" not in listed(browser, "done"), listed(browser, "done")


LAYOUT = """
const box = (e) => e.getBoundingClientRect();
const shown = (e) => e.offsetParent !== null;
const lines = (e) => {  // the rows its text takes
  const range = document.createRange();
  range.selectNodeContents(e);
  return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;
};
const all = (selector) => [...document.querySelectorAll(selector)].filter(shown);
const panels = all('.panel').map(box);
const overlaps = [];
panels.forEach((a, i) => panels.slice(i + 1).forEach((b, j) => {
  if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
    overlaps.push([i, i + 1 + j]);
}));
const texts = '#model, #status-text, #current-hop, .facts dt, .facts dd, .bar-label, .bar-value, '
  + '.stream-name, .stream-label, .stream-meta, #streams-updated, h1, h2';
const FIRST = ['current-label', 'hop-count', 'latency', 'bars', 'mic-start', 'stream-list'];
return {
  width: innerWidth, height: innerHeight, scroll_width: document.documentElement.scrollWidth,
  overlaps,
  clipped: all(texts).filter((e) => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
    .map((e) => e.id || e.className),
  wrapped: all('button:not(.stream), .facts dt, .facts dd').filter((e) => lines(e) > 1)
    .map((e) => e.textContent.trim()),
  model_width: box(document.getElementById('model')).width,
  below_first_screen: FIRST.filter((id) => box(document.getElementById(id)).bottom > innerHeight),
};
"""


@pytest.mark.parametrize("width,height", [(800, 600), (1280, 800), (390, 844)])
def test_the_page_is_readable_narrow_and_wide(browser, server, artifacts, width, height):
    """Watching a stream in a laptop's small window, a desktop's and a phone's: nothing clipped,
    overlapping or scrolling sideways, no button or number broken over two lines; from 800x600
    up, what is heard (label, numbers, bars) and the controls are on the first screen."""
    from selenium.webdriver.common.by import By

    rate = 16_000
    audio = np.concatenate([_sine(1.0, rate), np.zeros(4 * rate, np.float32), _sine(4.0, rate)])
    client = PacedClient(server.ws, "porch", pcm_bytes(audio[:, None], "s16le"), rate)
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    open_page(browser, server)
    with evidence(browser, artifacts, f"page-{width}x{height}"):
        client.start()  # (the previous size's porch has ended: its name is free)
        wait(browser, 15, lambda d: listed(d, "porch"), "porch is not listed")
        browser.find_element(By.CSS_SELECTOR, "#stream-list button.stream[data-name='porch']").click()
        wait(browser, 10, lambda d: text(d, "status") == "watching porch", "not watching")
        client.watched.set()
        wait(browser, 30, lambda d: len(timeline(d)) >= 30, "fewer than 30 hops")
        layout = browser.execute_script(LAYOUT)
        browser.save_screenshot(str(artifacts / f"page-{width}x{height}.png"))
        client.join(60)
    assert (layout["width"], layout["height"]) == (width, height)
    assert layout["scroll_width"] <= width, "the page scrolls sideways"
    assert layout["overlaps"] == [] and layout["clipped"] == [] and layout["wrapped"] == [], layout
    assert layout["model_width"] >= min(300, width - 60), "the model line is squeezed"
    if width >= 800:
        assert layout["below_first_screen"] == [], layout


class PacedClient(threading.Thread):
    """A Python client on its own thread: declares, sends 1 s of audio, waits until the page
    watches, sends the rest at about twice real time (so the page sees it live), ends."""

    def __init__(self, url: str, name: str, pcm: bytes, rate: int) -> None:
        super().__init__(daemon=True)
        self.url, self.name, self.pcm, self.rate = url, name, pcm, rate
        self.watched = threading.Event()
        self.messages: list[dict] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._stream())
        except BaseException as exc:  # the test names it
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        assert not self.is_alive(), "the Python client did not finish"
        assert self.error is None, f"the Python client failed: {self.error!r}"

    async def _stream(self) -> None:
        import websockets

        chunk = self.rate // 10 * 2  # 0.1 s of s16le mono
        declaration = {"name": self.name, "sample_rate": self.rate, "format": "s16le", "top_k": len(LABELS)}
        async with websockets.connect(self.url, max_size=None) as ws:
            await ws.send(json.dumps(declaration))
            reader = asyncio.create_task(self._read(ws))
            await ws.send(self.pcm[: 10 * chunk])
            await asyncio.to_thread(self.watched.wait, 30)
            for at in range(10 * chunk, len(self.pcm), chunk):
                await ws.send(self.pcm[at : at + chunk])
                await asyncio.sleep(0.05)
            await ws.send(json.dumps({"end": True}))
            await asyncio.wait_for(reader, 60)

    async def _read(self, ws) -> None:
        import websockets

        try:
            async for message in ws:
                self.messages.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass


def _record(artifacts: Path, name: str, **values) -> None:
    """Timings and counts of a run, kept with its screenshots (page-timings.json)."""
    path = artifacts / "page-timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[name] = values
    path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
