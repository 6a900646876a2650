"""Regular sliding-window models behind the server's engine interface, for benchmarks only.

:class:`RegularEngine` is :class:`~coaudio.online.engine.Engine` with one change: instead of a
continual step per token, each hop recomputes the window of the stream's last n tokens. Same
weights, same hops, same probabilities (tested to 1e-5); only the work per hop differs. It is
what ``coaudio serve --engine regular|regular-cached`` runs, so that ``coaudio bench serve`` can
measure how many streams one server carries with a regular transformer against a continual one.

Two regular models, as ``coaudio bench stream`` has them::

    audio -> streaming log-mel -> patch (+ fixed token function)   the Engine's own code, inherited
      regular:         window of the last n model inputs (patches)  -> AudioClassifier.forward:
                       every patch of the window embedded again, the encoder over the window
      regular-cached:  window of the last n embedded tokens (D,)    -> encoder over the window
                       (each patch embedded once, as the continual engine does: the strongest
                       non-continual baseline; only the encoders differ)

``regular`` is the stock sliding-window model (what recomputing "the model" on each window
costs); the Engine still embeds each new patch once before the round (1/n of the work, unused).
Windows of equal length are run as one batch (in a round every stream has one new token; a
stream's window grows during its first n - 1 hops, the partial windows the continual engine
emits, then slides), except that ``regular`` embeds at most ``PATCHES_PER_FORWARD`` patches in
one forward: more is slower, not faster (GTZAN recipe's model, one core: 33 ms per hop for one
window of 120 patches at a time, 56 ms in pairs, 70 ms in fours; the embedder's activations
no longer fit in the caches). Everything runs on the hub's worker thread; not thread-safe.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable

import torch
from torch import Tensor

from coaudio.online.engine import Engine
from coaudio.online.model import OnlineModel, probabilities

ENGINES = ("continual", "regular", "regular-cached")
PATCHES_PER_FORWARD = 128  # regular: windows per forward = max(1, this // window length)


class RegularEngine(Engine):
    """:class:`~coaudio.online.engine.Engine`'s interface (open, push, push_many, take_frames,
    close, discard, streams); each hop recomputes the window (see the module docstring).

    Args:
        cached: keep the embedded tokens (``regular-cached``) instead of the model inputs.
    """

    def __init__(
        self,
        online: OnlineModel,
        cached: bool = False,
        full_window_only: bool = False,
        keep_frames: bool = False,
    ) -> None:
        super().__init__(online, full_window_only=full_window_only, keep_frames=keep_frames)
        self.cached = cached

    def open(self, stream: Hashable, sample_rate: int) -> None:
        super().open(stream, sample_rate)
        # the stream's state is its window: the last n model inputs or tokens, oldest first
        self._get(stream).state = deque(maxlen=self.online.window)

    def _round(
        self,
        names,
        streams: list,
        z: Tensor,
        inputs: list[Tensor],
        started: float,
        embed_ms: float,
        token_ms: float,
        out: dict,
    ) -> None:
        """One new token per stream (``z``: ``(B, D)``; ``inputs``: the model input of each):
        slide each window, then one regular forward per group of windows of equal length."""
        step_started = time.perf_counter()
        groups: dict[int, list[int]] = {}
        for row, s in enumerate(streams):
            s.state.append((z[row] if self.cached else inputs[row]).clone())  # not a view of the batch
            groups.setdefault(len(s.state), []).append(row)
        logits = torch.empty(len(streams), self.online.model.cfg.n_classes)
        for length, group in groups.items():
            per_forward = len(group) if self.cached else max(1, PATCHES_PER_FORWARD // length)
            for at in range(0, len(group), per_forward):
                rows = group[at : at + per_forward]
                # each window's first token has stream index next_hop - T + 1
                start = torch.tensor([streams[r].next_hop - length + 1 for r in rows])
                windows = torch.stack([torch.stack(list(streams[r].state)) for r in rows])  # (B, T, ...)
                logits[rows] = self._forward(windows, start)
        step_ms = embed_ms + (time.perf_counter() - step_started) * 1e3  # the round's, as the Engine's
        probs = probabilities(logits)
        for row, (name, s) in enumerate(zip(names, streams)):
            out[name].append(self._hop(s, logits[row], probs[row], inputs[row], started, step_ms, token_ms))
            s.next_hop += 1

    def _forward(self, windows: Tensor, start: Tensor) -> Tensor:
        """``(B, T, ...)`` windows -> logits ``(B, C)`` of their newest tokens."""
        model = self.online.model
        if not self.cached:
            return model(windows, start=start)
        return model.head(model.head_norm(model.encoder(windows, start=start)))


def make_engine(online: OnlineModel, kind: str) -> Engine | None:
    """The server's engine by name: None for ``continual`` (the hub's own default engine); a
    :class:`RegularEngine` keeping frames, as the hub's, for ``regular`` and ``regular-cached``."""
    if kind not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {kind!r}")
    if kind == "continual":
        return None
    return RegularEngine(online, cached=kind == "regular-cached", keep_frames=True)
