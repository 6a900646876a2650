"""Decoding audio files: any libsndfile format in, mono float32 out, clear errors.

Everything goes through soundfile (libsndfile 1.2: WAV, AU, FLAC, Ogg Vorbis/Opus, MP3, AIFF,
CAF, ...). Multi-channel audio is averaged to mono. Long files are read in blocks, so memory
stays bounded whatever the duration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000  # what read_audio resamples to by default: the log-mel front end's rate
RESAMPLE_QUALITY = "HQ"  # soxr quality, offline here and streaming in coaudio.features.stream

log = logging.getLogger(__name__)

# Extensions we hand to libsndfile, and the names users know them by.
FORMATS = {
    ".wav": "WAV",
    ".wave": "WAV",
    ".au": "AU",
    ".snd": "AU",
    ".flac": "FLAC",
    ".ogg": "Ogg Vorbis/Opus",
    ".oga": "Ogg Vorbis/Opus",
    ".opus": "Ogg Opus",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".caf": "CAF",
    ".w64": "Wave64",
}
BLOCK_SECONDS = 10.0  # how much audio stream_audio decodes at a time


class AudioError(Exception):
    """A file that cannot be used as audio; the message says which file and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int  # Hz, as stored in the file
    channels: int
    frames: int  # samples per channel
    format: str  # libsndfile's format name, e.g. "WAV"

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def supported_formats() -> str:
    return ", ".join(sorted({ext.lstrip(".") for ext in FORMATS}))


def audio_files_under(folder: str | Path) -> list[Path]:
    """Supported audio files anywhere under ``folder``, sorted; hidden files and folders
    (names starting with ".", such as macOS ``._*`` resource forks) are skipped."""
    folder = Path(folder)
    return sorted(
        f
        for f in folder.rglob("*")
        if f.is_file()
        and f.suffix.lower() in FORMATS
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    )


def to_mono(frames: np.ndarray) -> np.ndarray:
    """``(n, channels)`` float32 -> ``(n,)`` contiguous float32, the channels averaged."""
    mono = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_info(path: str | Path) -> AudioInfo:
    """Check that ``path`` is a readable, non-empty audio file and describe it."""
    import soundfile

    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise AudioError(path, f"unsupported format '{suffix or '(none)'}'; supported: {supported_formats()}")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(path, f"cannot decode as {FORMATS[suffix]}: {exc}") from None
    if info.frames <= 0:
        raise AudioError(path, "contains no audio samples")
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(path, f"invalid header ({info.samplerate} Hz, {info.channels} channels)")
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames), info.format)


def stream_audio(
    path: str | Path, block_seconds: float = BLOCK_SECONDS
) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Describe ``path`` and return an iterator over its mono float32 blocks at the file's
    own rate (``block_seconds`` each, the last one shorter). Decoding errors and NaN/inf
    samples raise :class:`AudioError` from the iterator."""
    info = audio_info(path)
    block = max(1, int(round(block_seconds * info.sample_rate)))
    return info, _blocks(info, block)


def _blocks(info: AudioInfo, block: int) -> Iterator[np.ndarray]:
    import soundfile

    done = 0
    try:
        with soundfile.SoundFile(info.path) as f:
            while True:
                data = read_frames(f, block)
                if data.shape[0] == 0:
                    break
                mono = to_mono(data)
                if not np.isfinite(mono).all():
                    bad = done + int(np.argmin(np.isfinite(mono)))
                    raise AudioError(info.path, f"NaN or infinite sample at {bad / info.sample_rate:.3f} s")
                done += data.shape[0]
                yield mono
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise AudioError(info.path, f"decoding failed after {done / info.sample_rate:.2f} s: {exc}") from None
    if done == 0:
        raise AudioError(info.path, "contains no audio samples")


def read_frames(f, frames: int) -> np.ndarray:
    """Up to ``frames`` frames ``(n, channels)`` float32 from an open ``soundfile.SoundFile``.

    Why not ``f.read``: soundfile seeks after every read to keep its position, and a seek in
    libsndfile's MP3 decoder (1.2.2) drops the bit reservoir, so MP3s read in blocks come out
    with errors up to 0.5 of full scale. libsndfile's own read call advances by itself."""
    import soundfile

    snd, ffi = getattr(soundfile, "_snd", None), getattr(soundfile, "_ffi", None)
    if snd is None or ffi is None:  # another soundfile version: its documented reader
        return f.read(frames, dtype="float32", always_2d=True)
    out = np.empty((frames, f.channels), dtype=np.float32)
    got = snd.sf_readf_float(f._file, ffi.cast("float *", out.ctypes.data), frames)
    code = snd.sf_error(f._file)
    if code:
        raise soundfile.LibsndfileError(code, "decoding failed: ")
    return out[:got]


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole file as ``(N,)`` mono float32 at ``sample_rate`` (resampled with soxr, the
    same resampler the streaming front end uses)."""
    info, blocks = stream_audio(path)
    return resample(np.concatenate(list(blocks)), info.sample_rate, sample_rate)


def resample(samples: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Offline resampling (to 16 kHz by default) with the resampler the streaming front end
    uses (soxr, :data:`RESAMPLE_QUALITY`), so both give the same samples."""
    import soxr

    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if sample_rate == target_rate:
        return samples
    return soxr.resample(samples, sample_rate, target_rate, quality=RESAMPLE_QUALITY).astype(np.float32)
