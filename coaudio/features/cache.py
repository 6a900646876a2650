"""On-disk feature cache: one safetensors file per audio file and feature configuration.

Layout: ``<cache>/<config key>/<file key>.safetensors``. The config key hashes the feature
configuration (and :data:`CACHE_VERSION`), so changing any setting starts a fresh folder; the
file key hashes the audio file's absolute path, size and modification time, so an edited file
is extracted again. Entries are written atomically (:mod:`coaudio.safeio`): an interrupted run
leaves no entry that could be mistaken for a complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from coaudio import progress
from coaudio.audio import AudioError, audio_files_under, stream_audio
from coaudio.digests import file_digest
from coaudio.features import musicnn_mel
from coaudio.features.logmel import PATCH_FRAMES, patches
from coaudio.features.stream import StreamingLogMel
from coaudio.safeio import save_safetensors_atomically
from coaudio.workers import worker_pool

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when the stored contents change meaning (2: MP3 block decoding fixed)
KINDS = ("logmel", "vggish", "musicnn")


@dataclass(frozen=True)
class FeatureConfig:
    """``logmel``: VGGish log-mel frames (F, 64); ``vggish``, ``musicnn``: the pretrained
    network's tokens (P, D) of patches every ``hop_frames`` frames of its own log-mel."""

    kind: str = "logmel"
    hop_frames: int = PATCH_FRAMES  # pretrained kinds only: frames between patch starts
    weights: str = ""  # pretrained kinds only: the weight file
    pca: str = ""  # vggish only: optional PCA file; embeddings are postprocessed
    layer: str = ""  # musicnn only: the output used as token

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "logmel" and not self.weights:
            raise ValueError(f"{self.kind} features need a local weight file (weights)")
        if self.hop_frames < 1:
            raise ValueError(f"hop_frames must be >= 1, got {self.hop_frames}")

    def key(self) -> str:
        settings = asdict(self)
        # hashed under the names entries were first stored with, so existing caches stay valid
        settings["patch_hop_frames"] = settings.pop("hop_frames")
        settings["vggish_weights"], settings["vggish_pca"] = settings.pop("weights"), settings.pop("pca")
        if not settings["layer"]:
            del settings["layer"]
        for name in ("vggish_weights", "vggish_pca"):  # identify weight files by content
            if settings[name]:
                settings[name] = file_digest(Path(settings[name]))
        text = json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class CacheError(ValueError):
    """A feature cache folder that cannot be used (a file, or a folder that cannot be made)."""


def check_cache(cache: str | Path, name: str = "feature cache", create: bool = True) -> Path:
    """``cache`` as a usable folder, made if missing (``create``; else only checked that it
    could be). Raises :class:`CacheError` saying why not (``name`` names it in the message,
    e.g. ``--cache``), so that a bad cache is one error before any work instead of a failure
    for every file."""
    cache = Path(cache)
    if cache.exists() and not cache.is_dir():
        raise CacheError(f"{name} {cache}: not a folder")
    if not create:
        above = next((p for p in cache.absolute().parents if p.exists()), None)
        if cache.is_dir() or above is None:
            return cache
        if not above.is_dir():
            raise CacheError(f"{name} {cache}: cannot create it ({above} is not a folder)")
        if not os.access(above, os.W_OK | os.X_OK):
            raise CacheError(f"{name} {cache}: cannot create it ({above} is not writable)")
        return cache
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"{name} {cache}: cannot create it ({exc.strerror or exc})") from None
    return cache


def file_key(path: Path) -> str:
    """Identity of an audio file's current contents, cheaply: path, size and mtime."""
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def entry_path(cache: Path, config: FeatureConfig, audio: Path) -> Path:
    return cache / config.key() / f"{file_key(audio)}.safetensors"


def load_entry(cache: Path, config: FeatureConfig, audio: Path) -> torch.Tensor | None:
    """The cached features of ``audio``, or None if there is no complete entry."""
    path = entry_path(cache, config, audio)
    return load_file(str(path))["features"] if path.exists() else None


def find_audio(paths: Iterable[str | Path]) -> list[Path]:
    """Audio files under ``paths`` (files as given; folders recursively), sorted, skipping
    hidden files such as macOS ``._*`` resource forks."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += audio_files_under(p)
        else:
            found.append(p)
    return sorted(set(found))


def stream_log_mel(audio: Path, kind: str = "logmel") -> torch.Tensor:
    """``(F, n_mels)`` log-mel frames of a file (VGGish's, or musicnn's for ``kind ==
    "musicnn"``), decoded and resampled block by block: memory is bounded by the block size,
    and the frames equal the one-shot log-mel of the whole decoded file exactly."""
    info, blocks = stream_audio(audio)
    streaming = musicnn_mel.StreamingMusicnnMel if kind == "musicnn" else StreamingLogMel
    extractor = streaming(info.sample_rate)
    parts = [extractor.push(block)[0] for block in blocks]
    parts.append(extractor.flush()[0])
    return torch.cat(parts)


def compute(audio: Path, config: FeatureConfig) -> torch.Tensor:
    """Features of one file according to ``config``."""
    frames = stream_log_mel(audio, config.kind)
    if config.kind == "logmel":
        return frames
    if config.kind == "musicnn":
        tokens = patches(frames, config.hop_frames, musicnn_mel.PATCH_FRAMES)
        return musicnn_embed(config.weights, config.layer)(tokens)
    return vggish_embed(config.weights, config.pca)(patches(frames, config.hop_frames))


def vggish_embed(weights: str, pca: str = ""):
    """A function ``(P, 96, 64) patches -> (P, 128)`` embeddings with the given VGGish files
    (postprocessed when a PCA file is given); the network is loaded once per process."""
    model = _loaded("vggish", weights, pca)

    def embed(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            embeddings = model(batch)
            return model.postprocess(embeddings) if model.has_pca else embeddings

    return embed


def musicnn_embed(weights: str, layer: str = "max_pool"):
    """A function ``(P, 187, 96) musicnn patches -> (P, D)`` tokens: the network's ``layer``
    (:data:`coaudio.features.frontend.MUSICNN_LAYERS`); the network is loaded once per process."""
    model = _loaded("musicnn", weights)
    with torch.inference_mode():  # the first forward pass sets up its kernels: now, not in a stream
        model.tokens(torch.zeros(1, musicnn_mel.PATCH_FRAMES, musicnn_mel.N_MELS), layer)

    def embed(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model.tokens(batch.float(), layer).to(batch.dtype)

    return embed


def check_weights(config: FeatureConfig) -> None:
    """Raise (FileNotFoundError, ValueError naming the file) unless ``config``'s weight files
    are readable and are the network's; the loaded network is kept for the tokens to come."""
    config.key()
    if config.kind != "logmel":
        _loaded(config.kind, config.weights, config.pca)


_LOADED: dict = {}


def _loaded(kind: str, weights: str, pca: str = ""):
    """One loaded network per process and file pair (loading takes seconds)."""
    if (kind, weights, pca) not in _LOADED:
        if kind == "musicnn":
            from coaudio.features.musicnn import load_musicnn

            _LOADED[(kind, weights, pca)] = load_musicnn(weights)
        else:
            from coaudio.features.embed import load_vggish

            _LOADED[(kind, weights, pca)] = load_vggish(weights, pca or None)
    return _LOADED[(kind, weights, pca)]


@dataclass
class Outcome:
    path: str
    status: str  # "extracted", "cached" or "failed"
    frames: int = 0  # rows of the stored features
    error: str = ""


def extract_one(audio: Path, cache: Path, config: FeatureConfig) -> Outcome:
    """Extract (or find cached) features of one file; errors become a failed outcome."""
    try:
        target = entry_path(cache, config, audio)
        if target.exists():  # the row count comes from the header: a rerun reads no data
            with safe_open(str(target), framework="pt") as entry:
                rows = entry.get_slice("features").get_shape()[0]
            return Outcome(str(audio), "cached", rows)
        features = compute(audio, config)
        save_safetensors_atomically({"features": features}, target)
        return Outcome(str(audio), "extracted", features.shape[0])
    except AudioError as exc:
        return Outcome(str(audio), "failed", error=exc.reason)
    except OSError as exc:  # e.g. disk full while writing: nothing half-written remains
        return Outcome(str(audio), "failed", error=f"{type(exc).__name__}: {exc}")


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def extract(
    files: list[Path],
    cache: Path,
    config: FeatureConfig,
    jobs: int = 1,
    fail_fast: bool = False,
    on_done: Callable[[Outcome], None] | None = None,
    bar: bool = True,
) -> Summary:
    """Extract features of ``files`` into ``cache`` with ``jobs`` processes. Without an
    ``on_done`` callback (and with ``bar``), a tqdm bar shows the progress (:mod:`coaudio.progress`)."""
    check_weights(config)  # fail early, before any worker starts
    check_cache(cache)  # one error, not a failed outcome per file
    summary = Summary()
    shown = progress.bar(len(files), "features", "file", enabled=on_done is None and bar)
    try:
        for outcome in _run(files, cache, config, jobs):
            summary.outcomes.append(outcome)
            progress.advance(shown)
            if on_done is not None:
                on_done(outcome)
            if fail_fast and outcome.status == "failed":
                break
    finally:
        progress.close(shown)
    return summary


def _needs_work(audio: Path, cache: Path, config: FeatureConfig) -> bool:
    """Whether ``audio`` has no cache entry yet (a file that cannot be looked up fails fast in
    process, so it needs no worker either)."""
    try:
        return not entry_path(cache, config, audio).exists()
    except OSError:
        return False


def _run(files: list[Path], cache: Path, config: FeatureConfig, jobs: int) -> Iterator[Outcome]:
    """Outcomes in the order of ``files``. Cached entries are read here; worker processes
    (seconds to start) are started only when two or more files need extracting."""
    todo = [f for f in files if _needs_work(f, cache, config)]
    if jobs <= 1 or len(todo) <= 1:
        for f in files:
            yield extract_one(f, cache, config)
        return
    # spawn, not fork: forking a process that has started torch's thread pools can hang
    with worker_pool(jobs) as pool:
        n = len(todo)
        futures = dict(zip(todo, pool.submit_all(extract_one, todo, [cache] * n, [config] * n)))
        for f in files:
            yield futures[f].result() if f in futures else extract_one(f, cache, config)
