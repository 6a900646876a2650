"""The per-hop engine: many audio streams through one model, each at its own position.

::

    engine = Engine(online)
    engine.open("kitchen", 48_000)
    engine.open("radio", 22_050)
    hops = engine.push_many({"kitchen": block_a, "radio": block_b})   # {"kitchen": [Hop], ...}
    hops = engine.close("radio")                                       # flush, then forget it

Per push, every stream's audio is resampled on its own, then the new log-mel frames of all of
them are computed as one batch (:func:`~coaudio.features.stream.push_many`); all patches the pushed
blocks completed (any stream, any number per stream) are embedded in one batch; then the
streams step together: round ``r`` gathers the states of every stream that has an ``r``-th new
token (streams at different positions allowed) and takes one batched step. The new batch state
is not split: each stream keeps it and its row (:mod:`coaudio.online.rows`), so the same
streams stepping together again (a server's usual round) pass it on without a copy, and the
round's class ranking, like everything else per round, is one tensor operation, not one per
stream. Streams join and leave at any time.

Each stream's hops equal those of that stream on its own (tested to 1e-5, same labels): the
step of a row depends only on that row's state and token. ``coaudio stream``, ``evaluate
--streaming`` and ``classify`` all run through this engine (one stream each);
:class:`~coaudio.online.session.Session` is its one-stream face.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from coaudio.features.stream import push_many
from coaudio.online.model import OnlineModel, probabilities
from coaudio.online.rows import gather


@dataclass(frozen=True)
class Hop:
    index: int  # 0, 1, ... in stream order
    start_s: float  # stream time where the prediction's window starts
    end_s: float  # stream time where this hop's audio ends
    probs: Tensor | None  # (C,) class probabilities; None for a warm-up hop without prediction
    logits: Tensor | None  # (C,)
    token: Tensor  # the model input of this hop: (96, 64) patch or (token_dim,) embedding
    warmup: bool  # the window holds fewer than n tokens
    latency_ms: float  # from the push that completed this hop to its prediction
    step_ms: float  # of which the model's step (token function + learned embedder + encoder + head)
    token_ms: float = 0.0  # of which the front end's token function (melstats, VGGish, musicnn)
    # every class as (indices, probabilities), best first: sorted for a whole round in one
    # operation, so top() costs no tensor operation per hop (None: ranked by top() itself)
    ranked: tuple[list[int], list[float]] | None = field(default=None, repr=False, compare=False)

    def top(self, k: int = 1) -> list[tuple[int, float]]:
        """The ``k`` most probable classes as (index, probability), best first."""
        if self.probs is None:
            return []
        if self.ranked is not None:
            indices, values = self.ranked
            return list(zip(indices[:k], values[:k]))
        values, indices = self.probs.topk(min(k, self.probs.numel()))
        return [(int(i), float(v)) for i, v in zip(indices, values)]


@dataclass
class _Stream:
    extractor: object  # the front end's streaming log-mel (FrontendConfig.streaming_mel)
    state: object  # a batch EncoderState this stream is row ``row`` of (coaudio.online.rows)
    row: int = 0
    next_hop: int = 0
    pending: list[Tensor] = field(default_factory=list)  # (P, frames, mels) patches not yet stepped
    frames: list[Tensor] = field(default_factory=list)  # (F, mels) log-mel frames not yet taken

    @property
    def waiting(self) -> int:
        return sum(len(p) for p in self.pending)


class Engine:
    """Streams keyed by any hashable id; see the module docstring."""

    def __init__(
        self,
        online: OnlineModel,
        full_window_only: bool = False,
        kernel: str = "auto",
        keep_frames: bool = False,
    ) -> None:
        self.online, self.full_window_only, self.kernel = online, full_window_only, kernel
        self.keep_frames = keep_frames  # keep each stream's log-mel frames for take_frames
        self._streams: dict[Hashable, _Stream] = {}

    @property
    def streams(self) -> list[Hashable]:
        return list(self._streams)

    def open(self, stream: Hashable, sample_rate: int) -> None:
        """Start a stream of mono audio at ``sample_rate``."""
        if stream in self._streams:
            raise ValueError(f"stream {stream!r} is already open")
        extractor = self.online.frontend.streaming_mel(sample_rate)
        self._streams[stream] = _Stream(extractor, self.online.model.init_state(1))

    def push(self, stream: Hashable, samples: np.ndarray) -> list[Hop]:
        """``samples``: ``(N,)`` mono float32 of one stream. Returns the hops they completed."""
        return self.push_many({stream: samples})[stream]

    def push_many(self, blocks: dict[Hashable, np.ndarray]) -> dict[Hashable, list[Hop]]:
        """Audio for several streams at once, stepped as one batch per round."""
        started = time.perf_counter()
        entries = [self._get(stream) for stream in blocks]
        # one FFT, mel projection and log over every stream's new frames, each stream's bits
        # unchanged (resampling and patch cutting stay per stream)
        pushed = push_many([entry.extractor for entry in entries], list(blocks.values()))
        for entry, (frames, patches) in zip(entries, pushed):
            self._keep(entry, frames, patches)
        return self._step_pending(list(blocks), started)

    def take_frames(self, stream: Hashable) -> Tensor:
        """``(F, mels)``: the log-mel frames ``stream``'s audio completed since the last call
        (only with ``keep_frames``; a live spectrogram, in the model's own front end)."""
        entry = self._get(stream)
        frames, entry.frames = entry.frames, []
        if not frames:
            return torch.empty(0, entry.extractor.N_MELS)
        return frames[0] if len(frames) == 1 else torch.cat(frames)

    def close(self, stream: Hashable) -> list[Hop]:
        """End of a stream: the hops its resampler's last samples complete; then it is gone."""
        started = time.perf_counter()
        entry = self._get(stream)
        self._keep(entry, *entry.extractor.flush())
        hops = self._step_pending([stream], started)[stream]
        del self._streams[stream]
        return hops

    def discard(self, stream: Hashable) -> None:
        """Forget ``stream`` without flushing it (after a failure); nothing if it is not open."""
        self._streams.pop(stream, None)

    def _keep(self, entry: _Stream, frames: Tensor, patches: Tensor) -> None:
        if len(patches):
            entry.pending.append(patches)
        if self.keep_frames and len(frames):
            entry.frames.append(frames)

    def _get(self, stream: Hashable) -> _Stream:
        if stream not in self._streams:
            raise KeyError(f"stream {stream!r} is not open")
        return self._streams[stream]

    def _step_pending(self, names: list[Hashable], started: float) -> dict[Hashable, list[Hop]]:
        out: dict[Hashable, list[Hop]] = {name: [] for name in names}
        streams = [self._streams[name] for name in names]
        counts = [s.waiting for s in streams]
        if not any(counts):
            return out
        with torch.inference_mode():
            embed_started = time.perf_counter()
            tokens, inputs, token_ms = self._embed(streams, counts)
            # each token's share of the batched embedding counts as part of its step
            embed_ms = (time.perf_counter() - embed_started) * 1e3 / sum(counts)
            token_ms /= sum(counts)
            total, offsets = sum(counts), list(itertools.accumulate(counts, initial=0))
            for r in range(max(counts)):
                rows = [i for i, count in enumerate(counts) if r < count]
                # streams that hold one batch state side by side, in its row order: gathering
                # takes one slice or index_select per batch state, not one per stream (rows)
                rows.sort(key=lambda i: (id(streams[i].state), streams[i].row))
                z, model_inputs = tokens, inputs
                if rows != list(range(total)):  # not every token, in order: this round's
                    index = torch.tensor([offsets[i] + r for i in rows])
                    z, model_inputs = tokens.index_select(0, index), inputs.index_select(0, index)
                self._round(
                    [names[i] for i in rows],
                    [streams[i] for i in rows],
                    z,
                    model_inputs,
                    started,
                    embed_ms,
                    token_ms,
                    out,
                )
        for s in streams:
            s.pending.clear()
        return out

    def _embed(self, streams: list[_Stream], counts: list[int]) -> tuple[Tensor, Tensor, float]:
        """Every pending patch of every stream through the front end in one batch, stream
        after stream: the model-width tokens ``(sum counts, D)``, the model inputs
        ``(sum counts, ...)`` (for ``Hop.token``), and the milliseconds the front end's token
        function took for all of them."""
        online = self.online
        blocks = [p for s in streams for p in s.pending]
        patches = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        started = time.perf_counter()
        inputs = patches if online.embed is None else online.embed(patches)
        token_ms = (time.perf_counter() - started) * 1e3 if online.embed is not None else 0.0
        return online.model.tokens(inputs), inputs, token_ms

    def _round(
        self,
        names,
        streams: list[_Stream],
        z: Tensor,
        inputs: Tensor,
        started: float,
        embed_ms: float,
        token_ms: float,
        out: dict,
    ) -> None:
        """One batched step of the streams that have a token in this round: ``z`` ``(B, D)``
        their tokens, ``inputs`` ``(B, ...)`` their model inputs, in the order of ``streams``.
        The new batch state stays whole: each stream keeps it and its row (module rows)."""
        model = self.online.model
        step_started = time.perf_counter()
        min_t = min(s.next_hop for s in streams)  # a stream's token count is its next hop's index
        state = gather([s.state for s in streams], [s.row for s in streams], min_t)
        logits, state = model.step_embedded(z, state, emit_partial=True, kernel=self.kernel)
        step_ms = embed_ms + (time.perf_counter() - step_started) * 1e3
        probs = probabilities(logits)
        values, indices = probs.sort(dim=-1, descending=True, stable=True)
        ranked = zip(indices.tolist(), values.tolist())
        each = zip(names, streams, logits.unbind(0), probs.unbind(0), inputs.unbind(0), ranked)
        for row, (name, s, logit, prob, token, ranks) in enumerate(each):
            s.state, s.row = state, row
            out[name].append(self._hop(s, logit, prob, token, started, step_ms, token_ms, ranks))
            s.next_hop += 1

    def _hop(
        self,
        s: _Stream,
        logits: Tensor,
        probs: Tensor,
        token: Tensor,
        started: float,
        step_ms: float,
        token_ms: float,
        ranked: tuple[list[int], list[float]] | None = None,
    ) -> Hop:
        online, index = self.online, s.next_hop
        warmup = index + 1 < online.window
        if warmup and self.full_window_only:
            logits = probs = ranked = None
        frontend = online.frontend
        return Hop(
            index,
            frontend.window_start_s(index, online.window),
            frontend.hop_end_s(index),
            probs,
            logits,
            token,
            warmup,
            (time.perf_counter() - started) * 1e3,
            step_ms,
            token_ms,
            ranked,
        )
