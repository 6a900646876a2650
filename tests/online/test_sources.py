"""Byte streams (stdin) decode to exactly what the file reader gives for the same audio."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from coaudio.audio import AudioError, stream_audio
from coaudio.online.sources import PcmLayout, open_byte_stream
from tests.online.helpers import tone_mix

STREAMED = [
    ("WAV", "PCM_16"),
    ("WAV", "PCM_24"),
    ("WAV", "PCM_32"),
    ("WAV", "FLOAT"),
    ("WAV", "DOUBLE"),
    ("WAV", "PCM_U8"),
    ("WAV", "ULAW"),
    ("AU", "PCM_16"),
    ("AU", "PCM_24"),
    ("AU", "PCM_32"),
    ("AU", "PCM_S8"),
    ("AU", "FLOAT"),
    ("AU", "ULAW"),
]
WHOLE = [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")]


class Trickle(io.RawIOBase):
    """A pipe-like reader: no seeking, and each read returns at most ``step`` bytes."""

    def __init__(self, data: bytes, step: int = 997) -> None:
        self._data, self._at, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data[self._at : self._at + min(len(buffer), self._step)]
        buffer[: len(chunk)] = chunk
        self._at += len(chunk)
        return len(chunk)


def _file(tmp_path, fmt: str, subtype: str, rate: int = 22_050, channels: int = 2):
    path = tmp_path / f"x-{subtype}.{fmt.lower()}"
    soundfile.write(path, tone_mix(1.3, rate, channels), rate, format=fmt, subtype=subtype)
    return path


def _decode(data: bytes, **kwargs) -> tuple[int, np.ndarray]:
    rate, blocks = open_byte_stream(io.BufferedReader(Trickle(data)), **kwargs)
    parts = list(blocks)
    return rate, np.concatenate(parts) if parts else np.zeros(0, np.float32)


@pytest.mark.parametrize("fmt,subtype", STREAMED)
def test_streamed_headers_decode_bit_exactly(tmp_path, fmt, subtype):
    path = _file(tmp_path, fmt, subtype)
    info, blocks = stream_audio(path)
    rate, got = _decode(path.read_bytes(), block_seconds=0.01)
    assert rate == info.sample_rate == 22_050
    assert np.array_equal(got, np.concatenate(list(blocks)))


@pytest.mark.parametrize("fmt,subtype", WHOLE)
def test_other_containers_are_decoded_when_the_stream_ends(tmp_path, fmt, subtype):
    path = _file(tmp_path, fmt, subtype, rate=44_100)
    reference = np.concatenate(list(stream_audio(path)[1]))
    rate, got = _decode(path.read_bytes())
    assert rate == 44_100 and got.shape == reference.shape
    assert np.array_equal(got, reference)


@pytest.mark.parametrize("fmt,dtype", [("s16le", "<i2"), ("s32le", "<i4"), ("f32le", "<f4")])
def test_raw_pcm_with_rate_and_channels(tmp_path, fmt, dtype):
    audio = tone_mix(0.7, 8_000, channels=3)
    scale = {"<i2": 32767, "<i4": 2**31 - 1, "<f4": 1}[dtype]
    data = (audio * scale).astype(dtype)
    rate, got = _decode(data.tobytes(), fmt=fmt, sample_rate=8_000, channels=3, block_seconds=0.05)
    expected = PcmLayout(dtype, 3, 8_000).decode(data.tobytes())
    assert rate == 8_000 and np.array_equal(got, expected) and got.shape == (5_600,)
    assert np.abs(got - audio.mean(axis=1)).max() < 1e-4


def test_raw_s16le_drops_a_torn_frame(caplog):
    samples = (np.arange(1000) - 500).astype("<i2")
    rate, got = _decode(samples.tobytes() + b"\x01", fmt="s16le", sample_rate=16_000)
    assert rate == 16_000 and np.array_equal(got, samples / np.float32(32768))
    assert "dropped 1 trailing byte" in caplog.text


def test_auto_refuses_bytes_without_an_audio_header():
    """Headerless bytes are never guessed to be PCM: random bytes would become loud noise."""
    noise = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    with pytest.raises(AudioError, match="no audio format recognised .*--format"):
        _decode(noise)


def test_a_wav_data_size_is_honoured_and_streaming_placeholders_are_not(tmp_path):
    path = _file(tmp_path, "WAV", "PCM_16", channels=1)
    data = path.read_bytes() + b"LIST\x04\x00\x00\x00abcd"  # a trailing chunk is not audio
    _, got = _decode(data)
    assert got.shape == (int(1.3 * 22_050),)
    at = data.index(b"data")
    placeholder = data[: at + 4] + b"\xff\xff\xff\xff" + path.read_bytes()[at + 8 :]
    _, streamed = _decode(placeholder)  # a writer that could not seek back: read to the end
    assert np.array_equal(streamed, got)


def test_bad_streams_say_what_is_wrong():
    with pytest.raises(AudioError, match="empty input"):
        _decode(b"")
    with pytest.raises(AudioError, match="ended before its data chunk"):
        _decode(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    fmt_chunk = b"fmt \x10\x00\x00\x00" + bytes([0x55, 0, 1, 0]) + (8000).to_bytes(4, "little") + bytes(8)
    with pytest.raises(AudioError, match="unsupported WAV encoding"):
        _decode(b"RIFF\x00\x00\x00\x00WAVE" + fmt_chunk + b"data\x00\x00\x00\x00")
    with pytest.raises(AudioError, match="cannot decode the stream"):
        _decode(b"fLaC" + bytes(100))
    with pytest.raises(ValueError, match="format must be"):
        _decode(b"abc", fmt="mp3")
