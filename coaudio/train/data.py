"""Clips as token sequences, and the windows the model is trained and evaluated on.

A clip's tokens are its 96-frame log-mel patches every ``frontend.hop_frames`` frames, covering
the whole clip. A training example is a window of ``L`` consecutive tokens ending anywhere in
the clip, with ``L`` drawn from ``[min_window, n]``, so the model also learns to classify from
the first hops of a stream. Batches are left-padded: the newest token is always last, padding
is masked, and ``start`` gives each row's stream positions.

Windows of one clip overlap, and an epoch draws several per clip. :func:`shared_batch` therefore
hands the model each token a batch needs once (plus an index that lays them out as windows), and
:func:`training_windows` keeps a clip's windows next to each other, so one batch embeds a clip's
patches once instead of once per window and never embeds padding. :func:`batch` is the plain
layout (every window's tokens copied, padding included): the reference the shared one equals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from coaudio.data.tracks import Track
from coaudio.features.cache import extract, load_entry
from coaudio.features.fixed import patch_stats
from coaudio.features.frontend import PRETRAINED, FrontendConfig


@dataclass
class Clip:
    tokens: Tensor  # (P, 96, 64) log-mel patches, or (P, 128) fixed tokens (melstats, VGGish)
    label: int
    track_id: str
    path: str = ""


@dataclass(frozen=True)
class Window:
    clip: int  # index into the clip list
    end: int  # index of the newest token
    length: int  # tokens in the window


def load_clips(
    tracks: list[Track],
    labels: list[str],
    cache: Path,
    frontend: FrontendConfig,
    jobs: int = 2,
    bar: bool = True,
) -> tuple[list[Clip], list[str]]:
    """Features of ``tracks`` through the feature cache, as the tokens of ``frontend``: log-mel
    patches every ``hop_frames`` frames, their melstats, or a pretrained network's tokens (its
    ``weights`` must be files: resolve model names first). Returns the
    clips and the messages of tracks that could not be used (left out). ``bar``: show a tqdm
    bar while extracting (callers that show their own progress turn it off)."""
    config = frontend.cache_config()
    summary = extract([t.path for t in tracks], cache, config, jobs=jobs, bar=bar)
    failed = {o.path: o.error for o in summary.failed}
    clips, problems = [], [f"{path}: {error}" for path, error in failed.items()]
    index = {label: i for i, label in enumerate(labels)}
    for track in tracks:
        if str(track.path) in failed:
            continue
        entry = load_entry(cache, config, track.path)
        tokens = entry if frontend.kind in PRETRAINED else frontend.patches(entry)
        if frontend.kind == "melstats":
            tokens = patch_stats(tokens)  # fixed tokens: computed once here, not every epoch
        if tokens.shape[0] == 0:
            problems.append(f"{track.path}: shorter than one {frontend.patch_s:.2f} s patch")
            continue
        clips.append(Clip(tokens, index[track.label], track.track_id, str(track.path)))
    return clips, problems


def training_windows(
    clips: list[Clip], window: int, min_window: int, per_clip: int, generator: torch.Generator
) -> list[Window]:
    """``per_clip`` random windows from every clip; the clips in random order, each clip's
    windows together (so that a batch embeds the patches they share once)."""
    per = []
    for i, clip in enumerate(clips):
        count = clip.tokens.shape[0]
        mine = []
        for _ in range(per_clip):
            end = int(torch.randint(count, (1,), generator=generator))
            longest = min(window, end + 1)
            shortest = min(min_window, longest)
            length = int(torch.randint(shortest, longest + 1, (1,), generator=generator))
            mine.append(Window(i, end, length))
        per.append(mine)
    order = torch.randperm(len(per), generator=generator).tolist()
    return [w for j in order for w in per[j]]


def evaluation_windows(clips: list[Clip], window: int, stride: int) -> list[list[Window]]:
    """Per clip: the windows ending every ``stride`` hops once the window is full (or at the
    last token of a clip shorter than the window), always including the last token."""
    out = []
    for i, clip in enumerate(clips):
        count = clip.tokens.shape[0]
        first = min(window, count) - 1
        ends = sorted(set(range(first, count, stride)) | {count - 1})
        out.append([Window(i, e, min(window, e + 1)) for e in ends])
    return out


def batch(clips: list[Clip], windows: list[Window]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(tokens (B, L, ...), key_mask (B, L), start (B,), labels (B,))``, left-padded; a token
    is a ``(96, 64)`` patch or a precomputed vector."""
    longest = max(w.length for w in windows)
    x = torch.zeros(len(windows), longest, *clips[windows[0].clip].tokens.shape[1:])
    mask = torch.zeros(len(windows), longest, dtype=torch.bool)
    start = torch.empty(len(windows), dtype=torch.long)
    labels = torch.empty(len(windows), dtype=torch.long)
    for row, w in enumerate(windows):
        pad = longest - w.length
        x[row, pad:] = clips[w.clip].tokens[w.end - w.length + 1 : w.end + 1]
        mask[row, pad:] = True
        start[row] = w.end - w.length + 1 - pad  # stream index of column 0
        labels[row] = clips[w.clip].label
    return x, mask, start, labels


@dataclass
class SharedBatch:
    """Windows that share their tokens: row ``b``, column ``t`` is ``tokens[index[b, t]]``.

    ``tokens``: ``(U, 96, 64)`` patches or ``(U, token_dim)`` vectors, each once;
    ``owner``: ``(U,)`` the clip each token came from (per-clip augmentation);
    ``index``/``mask``: ``(B, L)``, left-padded (padding points at token 0 and is masked);
    ``start``: ``(B,)`` stream index of column 0; ``labels``: ``(B,)``.
    """

    tokens: Tensor
    owner: Tensor
    index: Tensor
    mask: Tensor
    start: Tensor
    labels: Tensor

    @property
    def rows(self) -> int:
        return self.index.shape[0]


def shared_batch(clips: list[Clip], windows: list[Window]) -> SharedBatch:
    """The windows' tokens, each needed token once; equal to :func:`batch` once gathered."""
    longest = max(w.length for w in windows)
    used: dict[int, Tensor] = {}  # clip -> which of its tokens some window reads
    for w in windows:
        covered = used.setdefault(w.clip, torch.zeros(clips[w.clip].tokens.shape[0], dtype=torch.bool))
        covered[w.end - w.length + 1 : w.end + 1] = True
    pieces, owners, where, at = [], [], {}, 0
    for clip, covered in used.items():
        positions = covered.nonzero().squeeze(1)
        pieces.append(clips[clip].tokens[positions])
        owners.append(torch.full((len(positions),), clip, dtype=torch.long))
        # token t of this clip sits at row at + (number of used tokens before t)
        where[clip] = at + torch.cumsum(covered.long(), 0) - 1
        at += len(positions)
    index = torch.zeros(len(windows), longest, dtype=torch.long)
    mask = torch.zeros(len(windows), longest, dtype=torch.bool)
    start = torch.empty(len(windows), dtype=torch.long)
    labels = torch.empty(len(windows), dtype=torch.long)
    for row, w in enumerate(windows):
        pad = longest - w.length
        index[row, pad:] = where[w.clip][w.end - w.length + 1 : w.end + 1]
        mask[row, pad:] = True
        start[row] = w.end - w.length + 1 - pad
        labels[row] = clips[w.clip].label
    return SharedBatch(torch.cat(pieces), torch.cat(owners), index, mask, start, labels)
