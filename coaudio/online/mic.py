"""Live input from a sound card through PortAudio (the ``sounddevice`` package).

``sounddevice`` is imported only here and only when needed, so everything else works on
machines without PortAudio. Its callback runs on PortAudio's thread and only copies the block
into a queue; the caller's thread does all the work, so slow processing shows up as a backlog
(measured) instead of as audio PortAudio silently throws away.

PortAudio over PulseAudio does not reliably raise overflow flags when audio is lost, so
:class:`DropDetector` also compares the frames received with the wall-clock time elapsed.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from coaudio.audio import to_mono

log = logging.getLogger(__name__)

PREFERRED_RATE = 16_000  # the model's rate: no resampling when the device offers it


class MicError(RuntimeError):
    """The microphone cannot be used; the message says why and what to do."""


def sounddevice():
    """The ``sounddevice`` module, or a :class:`MicError` saying what to install."""
    try:
        import sounddevice as sd
    except ImportError:
        raise MicError("microphone input needs the sounddevice package: pip install 'coaudio[mic]'") from None
    except OSError as exc:  # raised by sounddevice when libportaudio is absent
        raise MicError(
            f"PortAudio is not installed ({exc}); on Debian/Ubuntu: sudo apt-get install "
            "libportaudio2, on macOS: brew install portaudio"
        ) from None
    return sd


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    host_api: str
    channels: int  # maximum input channels
    default_rate: float
    is_default: bool


def input_devices() -> list[InputDevice]:
    """Every device PortAudio can record from."""
    sd = sounddevice()
    default = _default_input(sd)
    apis = [api["name"] for api in sd.query_hostapis()]
    return [
        InputDevice(
            i,
            d["name"],
            apis[d["hostapi"]],
            int(d["max_input_channels"]),
            float(d["default_samplerate"]),
            i == default,
        )
        for i, d in enumerate(sd.query_devices())
        if d["max_input_channels"] > 0
    ]


def _default_input(sd) -> int:
    try:
        return int(sd.default.device[0])  # (input, output) pair; -1 when there is none
    except (TypeError, ValueError, IndexError):
        return -1


def parse_device(spec: str | None) -> int | str | None:
    """``--device`` value: an index ("3") or part of a device name ("pulse")."""
    if spec is None or spec == "":
        return None
    return int(spec) if spec.strip().isdigit() else spec


@dataclass
class DropDetector:
    """Finds audio that never arrived by comparing frames received with time elapsed.

    ``update(frames, now)`` after every block: while the device keeps up, received frames
    track elapsed time to within its buffering; a shortfall beyond ``tolerance_s`` is reported
    once as a gap (seconds of audio missing) and then forgiven, so each gap counts once.
    Audio that arrives faster than real time (a backlog draining) moves the baseline forward.
    """

    sample_rate: int
    tolerance_s: float = 0.5
    received: int = 0
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (stream time, seconds missing)
    _start: float | None = None
    _offset: float = 0.0  # seconds forgiven so far (gaps) or credited (early audio)

    def update(self, frames: int, now: float) -> float:
        """Record ``frames`` new frames arriving at monotonic time ``now``; returns the
        seconds of audio newly found missing (0.0 if none)."""
        if self._start is None:  # the clock starts when the first block began recording
            self._start = now - frames / self.sample_rate
        self.received += frames
        deficit = (now - self._start) - self.received / self.sample_rate - self._offset
        if deficit < 0:
            self._offset += deficit
            return 0.0
        if deficit <= self.tolerance_s:
            return 0.0
        self._offset += deficit
        self.gaps.append((self.received / self.sample_rate, deficit))
        return deficit

    @property
    def dropped_s(self) -> float:
        return sum(g for _, g in self.gaps)


@dataclass
class MicStats:
    overflows: int = 0  # blocks PortAudio flagged with input_overflow
    max_backlog_s: float = 0.0  # most audio waiting in the queue for processing
    stalls: int = 0  # times no audio came for stall_s


class Microphone:
    """An open input stream; iterate :meth:`blocks` for ``(N,)`` mono float32 blocks.

    Recording is int16 (what every device and PulseAudio offer natively; converted exactly
    as libsndfile would: ``x / 32768``). ``sample_rate=None`` asks for 16 kHz and falls back
    to the device's default rate (the front end resamples).
    """

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate: int | None = None,
        channels: int = 1,
        block_s: float = 0.05,
        tolerance_s: float = 0.5,
        stall_s: float = 2.0,
    ) -> None:
        sd = sounddevice()
        self._sd, self.device, self.channels = sd, device, channels
        self.sample_rate = self._pick_rate(sd, device, sample_rate, channels)
        self.detector = DropDetector(self.sample_rate, tolerance_s)
        self.stats, self.stall_s = MicStats(), stall_s
        self._queue: queue.Queue = queue.Queue()
        self._block = max(1, int(block_s * self.sample_rate))
        self._stream = None

    def _pick_rate(self, sd, device, wanted: int | None, channels: int) -> int:
        described = _describe_input(sd, device)
        for rate in [wanted] if wanted else [PREFERRED_RATE, int(described["default_samplerate"])]:
            try:
                sd.check_input_settings(device=device, samplerate=rate, channels=channels, dtype="int16")
                return int(rate)
            except Exception as exc:  # PortAudioError or ValueError from sounddevice
                error = exc
        raise MicError(
            f"input device {device if device is not None else '(default)'} cannot record "
            f"{channels} channel(s) at {wanted or PREFERRED_RATE} Hz: {error}"
        )

    def __enter__(self) -> Microphone:
        def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread: copy only
            self._queue.put((time.monotonic(), indata.copy(), bool(status.input_overflow)))

        try:
            self._stream = self._sd.InputStream(
                device=self.device,
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="int16",
                blocksize=self._block,
                callback=callback,
            )
            self._stream.start()
        except Exception as exc:
            raise MicError(
                f"cannot open input device {self.device if self.device is not None else '(default)'}: {exc}"
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def blocks(self) -> Iterator[tuple[np.ndarray, float]]:
        """Yields (mono float32 block, seconds of audio found missing before it) forever;
        logs a warning whenever no audio has come for ``stall_s``."""
        stalled = False
        while True:
            try:
                arrived, data, overflow = self._queue.get(timeout=self.stall_s)
            except queue.Empty:
                if not stalled:
                    self.stats.stalls += 1
                    log.warning("no audio from the input device for %.1f s; still waiting", self.stall_s)
                stalled = True
                continue
            stalled = False
            self.stats.overflows += overflow
            backlog = self._queue.qsize() * self._block / self.sample_rate
            self.stats.max_backlog_s = max(self.stats.max_backlog_s, backlog)
            gap = self.detector.update(len(data), arrived)
            yield to_mono(data.astype(np.float32) / np.float32(32768)), gap


def _describe_input(sd, device) -> dict:
    """PortAudio's description of the input ``device`` (None: the default one)."""
    if device is None and not input_devices():
        raise MicError(
            "no audio input device found (PortAudio lists none). Connect a microphone, or start "
            "PulseAudio/PipeWire; 'coaudio devices' lists what PortAudio sees"
        )
    try:
        return sd.query_devices(device, "input")
    except Exception as exc:  # ValueError (no match) or PortAudioError
        raise MicError(
            f"input device {device if device is not None else '(default)'}: {exc}; "
            "'coaudio devices' lists what PortAudio sees"
        ) from None
