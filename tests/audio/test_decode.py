"""Decoding real encoded files, and a clear AudioError for every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from coaudio.audio import AudioError, audio_info, read_audio, stream_audio

FORMATS = [  # (suffix, soundfile format, subtype, rate, channels)
    ("wav", "WAV", "PCM_16", 44100, 2),
    ("au", "AU", "PCM_16", 22050, 1),
    ("flac", "FLAC", "PCM_24", 48000, 2),
    ("ogg", "OGG", "VORBIS", 32000, 1),
    ("opus", "OGG", "OPUS", 48000, 1),
    ("mp3", "MP3", "MPEG_LAYER_III", 44100, 2),
]


def _tone(rate: int, seconds: float, channels: int, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * hz * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize("suffix,fmt,subtype,rate,channels", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_decodes_to_16k_mono(tmp_path, suffix, fmt, subtype, rate, channels):
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(path, _tone(rate, 2.0, channels), rate, format=fmt, subtype=subtype)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (rate, channels)
    x = read_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) / 16000 - 2.0) < 0.1  # mp3 keeps its encoder padding
    assert abs(_peak_hz(x, 16000) - 1000.0) < 10.0
    assert 0.3 < np.abs(x).max() < 0.7


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _tone(16000, 1.0, 1, 500.0), _tone(16000, 1.0, 1, 2000.0)
    path = tmp_path / "two.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(path), (left + right) / 2, atol=1e-6)


def test_long_files_are_read_in_bounded_blocks(tmp_path):
    path = tmp_path / "long.wav"
    x = (np.random.default_rng(0).standard_normal(65 * 8000) * 0.1).astype(np.float32)
    soundfile.write(path, x, 8000, subtype="FLOAT")
    info, blocks = stream_audio(path, block_seconds=10.0)
    sizes = [len(b) for b in blocks]
    assert sizes == [80000] * 6 + [40000]
    assert info.duration_s == pytest.approx(65.0)
    _, blocks = stream_audio(path, block_seconds=10.0)
    np.testing.assert_array_equal(np.concatenate(list(blocks)), x)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: d, "is a folder"),
        (lambda d: _write(d / "song.m4a", b"\x00\x00\x00 ftypM4A "), "unsupported format '.m4a'"),
        (lambda d: _write(d / "empty.wav", b""), "empty file"),
        # like GTZAN's jazz.00054.wav: named .wav but not RIFF
        (lambda d: _write(d / "jazz.00054.wav", b"\x00\x01garbage" * 500), "cannot decode as WAV"),
    ],
    ids=["missing", "folder", "unsupported", "empty", "corrupt"],
)
def test_bad_files_get_a_clear_error(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(AudioError, match=reason) as caught:
        read_audio(path)
    assert str(path) in str(caught.value)


def test_unsupported_format_lists_what_works(tmp_path):
    with pytest.raises(AudioError, match="supported: .*flac.*mp3.*wav"):
        audio_info(_write(tmp_path / "x.m4a", b"1234"))


def test_zero_length_audio(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        read_audio(path)


def test_nan_and_inf_samples_are_reported_with_their_time(tmp_path):
    x = np.zeros(32000, dtype=np.float32)
    x[24000] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"NaN or infinite sample at 1\.500 s"):
        read_audio(path)
    x[24000] = np.inf
    soundfile.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="infinite"):
        read_audio(path)


def test_truncated_file_still_reads_what_is_there(tmp_path):
    path = tmp_path / "cut.wav"
    soundfile.write(path, _tone(16000, 2.0, 1), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header still claims 2 s
    x = read_audio(path)
    assert 0.9 < len(x) / 16000 < 1.1


@pytest.mark.parametrize("block_seconds", [0.01, 0.1, 1.0])
def test_mp3_read_in_blocks_equals_one_read_and_the_signal(tmp_path, block_seconds):
    # soundfile's own block reads seek between reads, which corrupts libsndfile's MP3 decoder
    # (errors up to 0.48 on this tone); coaudio reads without seeking.
    rate = 44_100
    t = np.arange(int(7.1 * rate)) / rate
    tone = np.stack([0.4 * np.sin(2 * np.pi * (300 + 50 * t) * t)] * 2, axis=1).astype(np.float32)
    path = tmp_path / "chirp.mp3"
    soundfile.write(path, tone, rate, format="MP3")
    whole = soundfile.read(path, dtype="float32")[0].mean(axis=1)
    _, blocks = stream_audio(path, block_seconds=block_seconds)
    streamed = np.concatenate(list(blocks))
    assert np.array_equal(streamed, whole.astype(np.float32))
    assert np.abs(streamed[: len(tone)] - tone[:, 0]).max() < 0.05
