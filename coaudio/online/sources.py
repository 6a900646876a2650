"""Where streamed audio comes from: files (any supported format) and byte streams (stdin).

Every source yields ``(N,)`` mono float32 blocks at its own sample rate; conversion from
integers follows libsndfile (``x / 2**(bits - 1)``), so a WAV file read from a pipe gives
the very samples :func:`coaudio.audio.stream_audio` gives for the same file.

A byte stream is read incrementally when it is WAV, AU or raw PCM (headers are parsed here:
libsndfile needs to seek, which pipes cannot). Other containers (FLAC, Ogg, MP3, AIFF) are
recognised by their magic bytes and decoded once the stream has ended.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from coaudio.audio import AudioError, read_frames, to_mono

log = logging.getLogger(__name__)

RAW_FORMATS = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4"}
UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data sizes written by programs that cannot seek back
WHOLE_STREAM_MAGIC = (b"fLaC", b"OggS", b"ID3", b"FORM", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa")
STDIN = "<stdin>"


@dataclass(frozen=True)
class PcmLayout:
    """Interleaved PCM: ``sample`` is a numpy dtype string, "<i3"/">i3" (24 bit), "u1"
    (unsigned 8 bit) or "ulaw"."""

    sample: str
    channels: int
    sample_rate: int

    @property
    def sample_bytes(self) -> int:
        if self.sample in ("ulaw", "u1", "i1"):
            return 1
        return 3 if self.sample[1:] == "i3" else np.dtype(self.sample).itemsize

    @property
    def frame_bytes(self) -> int:
        return self.sample_bytes * self.channels

    def decode(self, data: bytes) -> np.ndarray:
        """Whole frames of bytes -> ``(frames,)`` mono float32."""
        return to_mono(_to_float(data, self.sample).reshape(-1, self.channels))


def _to_float(data: bytes, sample: str) -> np.ndarray:
    if sample == "ulaw":
        return _ULAW[np.frombuffer(data, dtype=np.uint8)]
    if sample == "u1":
        return (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128) / 128
    if sample[1:] == "i3":
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        lo, mid, hi = (
            (raw[:, 0], raw[:, 1], raw[:, 2]) if sample[0] == "<" else (raw[:, 2], raw[:, 1], raw[:, 0])
        )
        value = (lo << 8) | (mid << 16) | (hi << 24)  # sign lands in bit 31
        return (value >> 8).astype(np.float32) / np.float32(1 << 23)
    array = np.frombuffer(data, dtype=sample)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    return array.astype(np.float32) / np.float32(1 << (8 * array.dtype.itemsize - 1))


def _ulaw_table() -> np.ndarray:
    """G.711 mu-law byte -> float, as libsndfile decodes it (16-bit value / 32768)."""
    byte = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (byte >> 4) & 7, byte & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return (np.where(byte & 0x80, -magnitude, magnitude) / 32768).astype(np.float32)


_ULAW = _ulaw_table()


def read_pcm(
    stream: BinaryIO, layout: PcmLayout, block_frames: int, limit_bytes: int | None = None, head: bytes = b""
) -> Iterator[np.ndarray]:
    """Mono blocks of at most ``block_frames`` frames from ``head`` + ``stream`` (at most
    ``limit_bytes`` in all). A block is yielded as soon as the bytes of a read arrive, so
    output follows live input with no extra buffering."""
    frame = layout.frame_bytes
    pending = head if limit_bytes is None else head[:limit_bytes]
    remaining = None if limit_bytes is None else limit_bytes - len(pending)
    while True:
        need = block_frames * frame if remaining is None else min(block_frames * frame, remaining)
        chunk = _read_some(stream, need) if need > 0 else b""
        if remaining is not None:
            remaining -= len(chunk)
        pending += chunk
        whole = len(pending) - len(pending) % frame
        if whole:
            yield layout.decode(pending[:whole])
            pending = pending[whole:]
        if not chunk:
            break
    if pending:
        n = len(pending)
        log.warning(
            "stream ended inside a sample frame; dropped %d trailing byte%s", n, "" if n == 1 else "s"
        )


def _read_some(stream: BinaryIO, n: int) -> bytes:
    """What one read returns (at most ``n`` bytes, b"" only at the end): no waiting for more."""
    read1 = getattr(stream, "read1", None)
    return read1(n) if read1 is not None else stream.read(n)


def _read_up_to(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def open_byte_stream(
    stream: BinaryIO,
    fmt: str = "auto",
    sample_rate: int = 16_000,
    channels: int = 1,
    block_seconds: float = 0.1,
    name: str = STDIN,
) -> tuple[int, Iterator[np.ndarray]]:
    """Start reading audio from ``stream``. ``fmt``: "auto" (WAV/AU/other containers by their
    header; anything else is an error), or a raw format of :data:`RAW_FORMATS`, which then
    needs ``sample_rate`` and ``channels``. Returns (sample rate, iterator of mono blocks)."""
    if fmt != "auto" and fmt not in RAW_FORMATS:
        raise ValueError(f"format must be auto or one of {', '.join(RAW_FORMATS)}, got {fmt!r}")
    head = _read_up_to(stream, 12) if fmt == "auto" else b""
    if not head and fmt == "auto":
        raise AudioError(name, "no data on the stream (empty input)")
    if head.startswith((b"RIFF", b"RIFX")):
        layout, data_bytes, head = _wav_header(stream, head, name)
    elif head.startswith(b".snd"):
        layout, data_bytes, head = _au_header(stream, head, name)
    elif head.startswith(WHOLE_STREAM_MAGIC):
        return _whole_stream(stream, head, block_seconds, name)
    elif fmt == "auto":  # raw PCM has no header: guessing would turn any bytes into "audio"
        raise AudioError(
            name,
            f"no audio format recognised (the stream starts with {head[:8].hex(' ')}); "
            "pipe WAV, AU, FLAC, Ogg or MP3, or name the raw PCM format "
            f"({', '.join(RAW_FORMATS)}: --format with --sr and --channels)",
        )
    else:
        if sample_rate <= 0 or channels <= 0:
            raise AudioError(name, f"raw {fmt} needs a positive sample rate and channel count")
        layout, data_bytes = PcmLayout(RAW_FORMATS[fmt], channels, sample_rate), None
    block = max(1, int(round(block_seconds * layout.sample_rate)))
    return layout.sample_rate, read_pcm(stream, layout, block, data_bytes, head)


def _wav_header(stream: BinaryIO, head: bytes, name: str) -> tuple[PcmLayout, int | None, bytes]:
    if head[:4] == b"RIFX" or head[8:12] != b"WAVE":
        raise AudioError(name, "unsupported RIFF stream (only little-endian WAVE)")
    fmt = None
    while True:
        chunk_head = _read_up_to(stream, 8)
        if len(chunk_head) < 8:
            raise AudioError(name, "WAV stream ended before its data chunk")
        chunk_id, size = chunk_head[:4], struct.unpack("<I", chunk_head[4:])[0]
        if chunk_id == b"data":
            if fmt is None:
                raise AudioError(name, "WAV data chunk before its fmt chunk")
            return fmt, (None if size in UNKNOWN_SIZES else size), b""
        body = _read_up_to(stream, size + (size & 1))  # chunks are padded to even sizes
        if chunk_id == b"fmt ":
            fmt = _wav_layout(body, name)


def _wav_layout(body: bytes, name: str) -> PcmLayout:
    if len(body) < 16:
        raise AudioError(name, "WAV fmt chunk too short")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the GUID
        tag = struct.unpack("<H", body[24:26])[0]
    samples = {
        (1, 8): "u1",
        (1, 16): "<i2",
        (1, 24): "<i3",
        (1, 32): "<i4",
        (3, 32): "<f4",
        (3, 64): "<f8",
        (7, 8): "ulaw",
    }
    if (tag, bits) not in samples or channels < 1 or rate < 1:
        raise AudioError(
            name, f"unsupported WAV encoding (format tag {tag}, {bits} bits, {channels} channels)"
        )
    return PcmLayout(samples[(tag, bits)], channels, rate)


def _au_header(stream: BinaryIO, head: bytes, name: str) -> tuple[PcmLayout, int | None, bytes]:
    rest = _read_up_to(stream, 12)
    if len(rest) < 12:
        raise AudioError(name, "AU header too short")
    offset, size = struct.unpack(">II", head[4:12])
    encoding, rate, channels = struct.unpack(">III", rest)
    samples = {1: "ulaw", 2: "i1", 3: ">i2", 4: ">i3", 5: ">i4", 6: ">f4", 7: ">f8"}
    if encoding not in samples or channels < 1 or rate < 1 or offset < 24:
        raise AudioError(name, f"unsupported AU encoding {encoding} ({channels} channels, {rate} Hz)")
    _read_up_to(stream, offset - 24)  # annotation field
    return PcmLayout(samples[encoding], channels, rate), (None if size in UNKNOWN_SIZES else size), b""


def _whole_stream(stream: BinaryIO, head: bytes, block_seconds: float, name: str):
    import soundfile

    log.warning(
        "%s: this container cannot be decoded from a pipe as it arrives; decoding after the "
        "stream ends (pipe WAV, AU or raw PCM for live output)",
        name,
    )
    data = io.BytesIO(head + stream.read())
    try:
        f = soundfile.SoundFile(data)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise AudioError(name, f"cannot decode the stream: {exc}") from None
    block = max(1, int(round(block_seconds * f.samplerate)))

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while True:
                data = read_frames(f, block)
                if not len(data):
                    return
                yield to_mono(data)

    return f.samplerate, blocks()
