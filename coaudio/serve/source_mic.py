"""An input device the server records itself (``NAME=mic:DEVICE``).

The device is picked and checked as ``coaudio stream --mic --device`` does it
(:class:`~coaudio.online.mic.Microphone`: an index or part of a name, 16 kHz where the device
offers it, else its own rate, which the hub resamples). PortAudio's callback only queues each
block; the source's thread takes them with a timeout, so it notices a device that stopped
(PortAudio ends the stream when the device or its audio server goes away) or went silent, and
:meth:`~coaudio.serve.source_base.PulledSource.stop` is never stuck behind a device.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from coaudio.audio import to_mono
from coaudio.online.mic import DropDetector, MicError, Microphone, parse_device, sounddevice
from coaudio.serve.source_base import POLL_S, Backoff, PulledSource, SourceError

log = logging.getLogger(__name__)

STALL_S = 5.0  # no audio for this long is a drop: reopening is the one remedy a server has
BLOCK_S = 0.05  # PortAudio's block: what a hop waits at most for its audio


class MicSource(PulledSource):
    """``NAME=mic:DEVICE`` (``mic:`` alone: the default input device)."""

    kind = "mic"

    def __init__(
        self, name: str, device: str = "", backoff: Backoff | None = None, stall_s: float = STALL_S
    ) -> None:
        super().__init__(name, device or "default", backoff)
        self.device, self.stall_s = parse_device(device), stall_s

    def check(self) -> None:
        self._microphone()

    def _microphone(self) -> Microphone:
        """The device, its rate chosen and its settings checked; opens nothing yet."""
        try:
            return Microphone(self.device, None, 1, BLOCK_S)
        except MicError as exc:
            raise SourceError(f"source {self.name}: {exc}") from None

    def _pump(self) -> str:
        microphone = self._microphone()
        blocks: queue.Queue = queue.Queue()
        finished = threading.Event()
        stream = _open_input(microphone, blocks, finished)
        try:
            return self._drain(blocks, finished, microphone.sample_rate)
        finally:
            _close(stream)

    def _drain(self, blocks: queue.Queue, finished: threading.Event, rate: int) -> str:
        """Push blocks until the device stops or stalls (the reason) or stop() (``""``)."""
        session = self._open_session(rate, "s16le")
        detector, last = DropDetector(rate), time.monotonic()
        while not self._stop.is_set():
            try:
                arrived, data = blocks.get(timeout=POLL_S * 5)
            except queue.Empty:
                if finished.is_set():  # everything it recorded is pushed by now
                    return "the input device stopped (unplugged, or its audio server went away)"
                if time.monotonic() - last > self.stall_s:
                    return f"no audio from the input device for {self.stall_s:g} s"
                continue
            last = time.monotonic()
            gap = detector.update(len(data), arrived)
            if gap > 0:
                log.warning("source %s: about %.2f s of audio did not arrive; continuing", self.name, gap)
            if not session.push(to_mono(data.astype(np.float32) / np.float32(32768))):
                break
        return ""


def _open_input(microphone: Microphone, blocks: queue.Queue, finished: threading.Event):
    """A started int16 input stream whose blocks go to ``blocks`` as (arrival, data)."""

    def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread: copy only
        blocks.put((time.monotonic(), indata.copy()))

    name = microphone.device if microphone.device is not None else "(default)"
    try:
        stream = sounddevice().InputStream(
            device=microphone.device,
            samplerate=microphone.sample_rate,
            channels=1,
            dtype="int16",
            blocksize=max(1, int(BLOCK_S * microphone.sample_rate)),
            callback=callback,
            finished_callback=finished.set,
        )
        stream.start()
    except MicError as exc:
        raise SourceError(str(exc)) from None
    except Exception as exc:  # PortAudioError or ValueError from sounddevice
        raise SourceError(f"cannot open input device {name}: {exc}") from None
    return stream


def _close(stream) -> None:
    try:
        stream.close()  # also when the device is gone: PortAudio may still complain
    except Exception as exc:
        log.debug("closing the input stream: %s", exc)
