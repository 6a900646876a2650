"""The ``/ws`` protocol of ``coaudio serve``: what a client declares, what the server accepts.

A client opens ``/ws`` and sends one JSON text message first, either a stream::

    {"name": "kitchen", "sample_rate": 48000, "channels": 2, "format": "s16le",
     "top_k": 5, "spectrogram": false}

(``top_k`` and ``spectrogram`` optional) followed by binary messages of interleaved PCM of any
size (a message may end inside a frame: the rest comes with the next one), and finally
``{"end": true}``; or a watch request ``{"watch": "kitchen"}`` to receive the results of a
stream that is already live. Everything a client may get wrong raises :class:`ProtocolError`,
whose message the server sends back as ``{"type": "error", "error": ...}`` before it closes
that one connection.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

from coaudio.online.sources import RAW_FORMATS, PcmLayout

FORMATS = ("s16le", "f32le")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")  # safe in URLs, CSV and logs
DEFAULT_TOP_K = 5


class ProtocolError(ValueError):
    """A client broke the protocol or a limit; the message says which and how."""


@dataclass(frozen=True)
class Limits:
    """What one server accepts; every limit is checked before any work is done."""

    max_message_bytes: int = 1 << 20  # one binary message (1 MiB = 5.5 s of 48 kHz stereo s16le)
    max_text_chars: int = 1 << 16  # one JSON text message (a declaration is ~100 characters)
    min_sample_rate: int = 4_000
    max_sample_rate: int = 192_000
    max_channels: int = 8
    max_streams: int = 256  # live streams in all
    max_streams_per_client: int = 16  # live streams from one remote address
    max_watchers_per_client: int = 32  # watching connections from one remote address
    max_backlog_s: float = 10.0  # audio of one stream received but not yet classified
    max_queued_results: int = 512  # messages waiting for one slow client before they are dropped
    hello_timeout_s: float = 10.0  # time to send the first message


@dataclass(frozen=True)
class StreamSpec:
    """One live stream: its name and the PCM it sends."""

    name: str
    sample_rate: int
    channels: int = 1
    format: str = "f32le"
    top_k: int = DEFAULT_TOP_K
    spectrogram: bool = False  # also send the model's log-mel frames ({"type": "mel"})
    kind: str = "ws"  # ws | url | mic
    source: str = ""  # the URL or device of a pulled stream; the client address of a WebSocket

    @property
    def layout(self) -> PcmLayout:
        return PcmLayout(RAW_FORMATS[self.format], self.channels, self.sample_rate)


def parse_first(text: str | None, limits: Limits, peer: str = "") -> StreamSpec | str:
    """The first message: a :class:`StreamSpec`, or the name of the stream to watch."""
    if text is None:
        raise ProtocolError("the first message must be JSON text (the stream's declaration), not binary")
    _check_length(text, limits)
    try:
        message = _json(text)
    except ValueError as exc:
        raise ProtocolError(f"the first message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("the first message must be a JSON object")
    if "watch" in message:
        if set(message) != {"watch"}:
            extra = ", ".join(sorted(set(message) - {"watch"}))
            raise ProtocolError(f'a watch request is {{"watch": NAME}} alone; it also has {extra}')
        return check_name(message["watch"])
    return parse_spec(message, limits, peer)


def parse_spec(message: dict, limits: Limits, peer: str = "") -> StreamSpec:
    known = {"name", "sample_rate", "channels", "format", "top_k", "spectrogram"}
    unknown = sorted(set(message) - known)
    if unknown:
        raise ProtocolError(f"unknown field(s) {', '.join(unknown)}; the declaration has {sorted(known)}")
    missing = [key for key in ("name", "sample_rate") if key not in message]
    if missing:
        raise ProtocolError(
            f'the declaration lacks {", ".join(missing)} (e.g. {{"name": "mic", '
            '"sample_rate": 16000, "channels": 1, "format": "s16le"})'
        )
    fmt = message.get("format", "f32le")
    if fmt not in FORMATS:
        raise ProtocolError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rate = _integer(message, "sample_rate", limits.min_sample_rate, limits.max_sample_rate)
    channels = _integer(message, "channels", 1, limits.max_channels, default=1)
    top_k = _integer(message, "top_k", 1, 1000, default=DEFAULT_TOP_K)
    spectrogram = message.get("spectrogram", False)
    if not isinstance(spectrogram, bool):
        raise ProtocolError("spectrogram must be true or false")
    return StreamSpec(check_name(message["name"]), rate, channels, fmt, top_k, spectrogram, "ws", peer)


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ProtocolError(
            f"stream name {name!r} must be 1-64 letters, digits and _ . : - (starting with a letter or digit)"
        )
    return name


def _integer(message: dict, key: str, low: int, high: int, default: int | None = None) -> int:
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ProtocolError(f"{key} must be between {low} and {high}, got {value}")
    return value


def parse_control(text: str, limits: Limits) -> dict:
    """A text message after the declaration: only ``{"end": true}`` is defined."""
    _check_length(text, limits)
    try:
        message = _json(text)
    except ValueError as exc:
        raise ProtocolError(f"a text message is not JSON: {exc}") from None
    if message != {"end": True}:
        raise ProtocolError(
            'after the declaration, text messages may only be {"end": true}; send audio as binary'
        )
    return message


def _check_length(text: str, limits: Limits) -> None:
    if len(text) > limits.max_text_chars:
        raise ProtocolError(
            f"a text message of {len(text)} characters; JSON messages are at most {limits.max_text_chars}"
        )


def _json(text: str):
    """json.loads, with every way a hostile text can fail as a ValueError that names it: nesting
    deeper than the interpreter's recursion limit, integers of thousands of digits."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(exc.msg) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise ValueError("a number with too many digits") from None


class PcmDecoder:
    """Binary messages of interleaved PCM -> ``(N,)`` mono float32, across message borders.

    Decoding is :class:`~coaudio.online.sources.PcmLayout`'s, the one ``coaudio stream`` uses
    for raw PCM (integers scale as libsndfile reads them, channels averaged), so the samples
    equal those ``coaudio stream`` reads from a WAV file of the same PCM.
    """

    def __init__(self, spec: StreamSpec, limits: Limits) -> None:
        self.layout, self.limits = spec.layout, limits
        self._rest = b""
        self.frames = 0  # received so far

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) > self.limits.max_message_bytes:
            raise ProtocolError(
                f"a binary message of {len(data)} bytes exceeds the limit of "
                f"{self.limits.max_message_bytes}; send smaller chunks"
            )
        data = self._rest + data
        whole = len(data) - len(data) % self.layout.frame_bytes
        self._rest = data[whole:]
        samples = self.layout.decode(data[:whole])
        if not np.isfinite(samples).all():
            raise ProtocolError("f32le audio holds NaN or infinite samples")
        self.frames += len(samples)
        return samples

    @property
    def seconds(self) -> float:
        return self.frames / self.layout.sample_rate


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: a non-finite number is sent as null."""
    return None if value is None or not math.isfinite(value) else value
