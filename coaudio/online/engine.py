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
streams step together: round ``r`` stacks the states of every stream that has an ``r``-th new
token (:func:`~coaudio.continual.stack_states`, streams at different positions allowed), takes
one batched step and splits the states again. A stream alone in a round steps on its own state
(no stacking). Streams join and leave at any time.

Each stream's hops equal those of that stream on its own (tested to 1e-5, same labels): the
step of a row depends only on that row's state and token. ``coaudio stream``, ``evaluate
--streaming`` and ``classify`` all run through this engine (one stream each);
:class:`~coaudio.online.session.Session` is its one-stream face.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from coaudio.continual import stack_states, unstack_states
from coaudio.features.stream import push_many
from coaudio.online.model import OnlineModel, probabilities


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

    def top(self, k: int = 1) -> list[tuple[int, float]]:
        """The ``k`` most probable classes as (index, probability), best first."""
        if self.probs is None:
            return []
        values, indices = self.probs.topk(min(k, self.probs.numel()))
        return [(int(i), float(v)) for i, v in zip(indices, values)]


@dataclass
class _Stream:
    extractor: object  # the front end's streaming log-mel (FrontendConfig.streaming_mel)
    state: object  # EncoderState of batch 1
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
            for r in range(max(counts)):
                rows = [i for i, count in enumerate(counts) if r < count]
                z = (
                    tokens[rows[0]][r : r + 1]
                    if len(rows) == 1
                    else torch.stack([tokens[i][r] for i in rows])
                )
                self._round(
                    [names[i] for i in rows],
                    [streams[i] for i in rows],
                    z,
                    [inputs[i][r] for i in rows],
                    started,
                    embed_ms,
                    token_ms,
                    out,
                )
        for s in streams:
            s.pending.clear()
        return out

    def _embed(self, streams: list[_Stream], counts: list[int]) -> tuple[list[Tensor], list[Tensor], float]:
        """Every pending patch of every stream through the front end in one batch: per stream,
        the model-width tokens ``(P, D)`` and the model inputs ``(P, ...)`` (for ``Hop.token``),
        and the milliseconds the front end's token function took for all of them."""
        online = self.online
        blocks = [p for s in streams for p in s.pending]
        patches = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        started = time.perf_counter()
        inputs = patches if online.embed is None else online.embed(patches)
        token_ms = (time.perf_counter() - started) * 1e3 if online.embed is not None else 0.0
        embedded = online.model.tokens(inputs)
        return list(embedded.split(counts)), list(inputs.split(counts)), token_ms

    def _round(
        self,
        names,
        streams: list[_Stream],
        z: Tensor,
        inputs: list[Tensor],
        started: float,
        embed_ms: float,
        token_ms: float,
        out: dict,
    ) -> None:
        """One batched step of the streams that have a token in this round."""
        model = self.online.model
        step_started = time.perf_counter()
        state = streams[0].state if len(streams) == 1 else stack_states([s.state for s in streams])
        logits, state = model.step_embedded(z, state, emit_partial=True, kernel=self.kernel)
        step_ms = embed_ms + (time.perf_counter() - step_started) * 1e3
        states = [state] if len(streams) == 1 else unstack_states(state)
        probs = probabilities(logits)
        for row, (name, s) in enumerate(zip(names, streams)):
            s.state = states[row]
            out[name].append(self._hop(s, logits[row], probs[row], inputs[row], started, step_ms, token_ms))
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
    ) -> Hop:
        online, index = self.online, s.next_hop
        warmup = index + 1 < online.window
        if warmup and self.full_window_only:
            logits = probs = None
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
        )
