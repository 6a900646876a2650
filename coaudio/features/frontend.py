"""How audio becomes the model's tokens, said once: :class:`FrontendConfig`.

A recipe's ``[data.frontend]`` table, the feature cache's key and every checkpoint's front end
are this one typed description, and every stream time a report prints (when a hop starts and
ends, where a prediction's window starts) comes from its methods, so ``evaluate
--streaming``, ``stream`` and ``classify --timeline`` cannot disagree.

Kinds:

* ``learned``: VGGish log-mel patches (16 kHz, 96 frames = 0.96 s) every ``hop_frames``
  frames, embedded by the patch embedder that is trained with the model;
* ``melstats``: the same patches summarised per mel band (mean and standard deviation over
  time, 128-d; :mod:`coaudio.features.fixed`): fixed tokens, so an epoch only runs the
  transformer;
* ``vggish``: the same patches through the pretrained VGGish network (``weights``, optional
  ``pca``), 128-d tokens computed once into the feature cache;
* ``musicnn``: musicnn's own log-mel (16 kHz, 96 bands, 16 ms frames) in 187-frame (3 s)
  patches through the pretrained MSD musicnn network; the token is its ``layer``
  (:data:`MUSICNN_LAYERS`), computed once into the feature cache.

``weights`` and ``pca`` name a model of the model store (``"vggish"``, ``"musicnn"``: what
``coaudio models fetch`` installs) or a weight file. A run records each one's SHA-256
(``weights_sha256``, ``pca_sha256``), so a checkpoint knows exactly which weights its tokens
came from.

Older recipes, run configs and checkpoints spelled these fields differently
(``token_hop_frames``, ``features = "logmel"``, ``vggish_weights``...); :func:`migrate` reads
them, and nothing writes them any more.
"""

from __future__ import annotations

from dataclasses import dataclass

from coaudio.features import musicnn_mel
from coaudio.features.logmel import HOP_SAMPLES, N_MELS, PATCH_FRAMES, SAMPLE_RATE, WINDOW_SAMPLES
from coaudio.features.musicnn import LAYERS as MUSICNN_LAYERS  # token layer -> width

KINDS = ("learned", "melstats", "vggish", "musicnn")
PRETRAINED = ("vggish", "musicnn")  # kinds whose tokens come from pretrained weights


@dataclass(frozen=True)
class MelGrid:
    """Where a front end's log-mel frames lie in the 16 kHz stream: frame k's samples end at
    ``k * hop_samples + end_samples`` (VGGish: frames of 400 samples from k * 160; musicnn:
    512-sample frames centred on k * 256)."""

    hop_samples: int
    end_samples: int
    n_mels: int
    patch_frames: int


GRIDS = {
    "vggish": MelGrid(HOP_SAMPLES, WINDOW_SAMPLES, N_MELS, PATCH_FRAMES),
    "musicnn": MelGrid(
        musicnn_mel.HOP,
        musicnn_mel.N_FFT - musicnn_mel.LEFT_PAD,  # centred: a frame ends half a window after k * hop
        musicnn_mel.N_MELS,
        musicnn_mel.PATCH_FRAMES,
    ),
}


@dataclass(frozen=True)
class FrontendConfig:
    kind: str = "learned"  # see the module docstring
    hop_frames: int = 25  # log-mel frames between tokens (10 ms VGGish frames: 0.25 s)
    sample_rate: int = SAMPLE_RATE  # the log-mel's rate; input at any rate is resampled to it
    patch_frames: int = 0  # frames in one token's patch; 0: the kind's own (96, musicnn 187)
    weights: str = ""  # vggish, musicnn: a model store name or a weight file ("": the kind's model)
    pca: str = ""  # vggish: optional PCA (model name or file); embeddings are then post-processed
    layer: str = ""  # musicnn: the output used as token ("": max_pool), see MUSICNN_LAYERS
    weights_sha256: str = ""  # recorded by a run: the weights its tokens came from
    pca_sha256: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.hop_frames < 1:
            raise ValueError(f"hop_frames must be >= 1, got {self.hop_frames}")
        grid = self.grid
        if self.patch_frames == 0:  # frozen: the kind's own value is filled in once, here
            object.__setattr__(self, "patch_frames", grid.patch_frames)
        if self.kind in PRETRAINED and not self.weights:
            object.__setattr__(self, "weights", self.kind)
        if self.kind == "musicnn" and not self.layer:
            object.__setattr__(self, "layer", "max_pool")
        if (self.sample_rate, self.patch_frames) != (SAMPLE_RATE, grid.patch_frames):
            raise ValueError(
                f"the {self.kind} front end reads {grid.patch_frames}-frame log-mel patches at "
                f"{SAMPLE_RATE} Hz (got {self.patch_frames} frames at {self.sample_rate} Hz)"
            )
        self._check_files()

    def _check_files(self) -> None:
        if self.kind not in PRETRAINED and (self.weights or self.pca or self.weights_sha256):
            raise ValueError(f"weights and pca are for the pretrained kinds {PRETRAINED}, not {self.kind}")
        if self.pca and self.kind != "vggish":
            raise ValueError(f"pca is for kind = vggish, not {self.kind}")
        for field, value in (("weights", self.weights), ("pca", self.pca)):
            if value in PRETRAINED and value != self.kind:  # a model name, of another network
                raise ValueError(
                    f"{field} = {value!r} names the {value} model; kind {self.kind} needs its own"
                )
        if self.kind == "musicnn" and self.layer not in MUSICNN_LAYERS:
            raise ValueError(f"layer must be one of {tuple(MUSICNN_LAYERS)}, got {self.layer!r}")
        if self.kind != "musicnn" and self.layer:
            raise ValueError(f'layer is for kind = musicnn, not {self.kind} (set layer = "")')

    @property
    def grid(self) -> MelGrid:
        return GRIDS["musicnn" if self.kind == "musicnn" else "vggish"]

    @property
    def model_inputs(self) -> str:
        """What the classifier reads: "patches" (it embeds them) or "tokens" (embedded already)."""
        return "patches" if self.kind == "learned" else "tokens"

    @property
    def token_dim(self) -> int | None:
        """The width of precomputed tokens, or None when the model embeds them itself."""
        if self.kind == "musicnn":
            return MUSICNN_LAYERS[self.layer]
        return None if self.kind == "learned" else 128  # melstats: 64 means + 64 stds

    # --- timing: the one place stream times come from -----------------------------------

    @property
    def hop_s(self) -> float:
        return self.hop_frames * self.grid.hop_samples / self.sample_rate

    @property
    def patch_s(self) -> float:
        """Audio the first token needs: a whole patch of frames."""
        return self.hop_end_s(0)

    def hop_start_s(self, hop: int) -> float:
        """Stream time of hop ``hop``'s first frame (its start; musicnn: its centre)."""
        return hop * self.hop_frames * self.grid.hop_samples / self.sample_rate

    def hop_end_s(self, hop: int) -> float:
        """Stream time at which hop ``hop``'s audio is complete (its last frame's last sample)."""
        last_frame = hop * self.hop_frames + self.patch_frames - 1
        return (last_frame * self.grid.hop_samples + self.grid.end_samples) / self.sample_rate

    def window_start_s(self, hop: int, window: int) -> float:
        """Stream time where the prediction of hop ``hop`` starts: its oldest of <= ``window`` tokens."""
        return self.hop_start_s(max(0, hop - window + 1))

    # --- frames and patches -----------------------------------------------------------------

    def streaming_mel(self, sample_rate: int, dtype=None):
        """An object with ``push(chunk) -> (frames, patches)`` and ``flush()`` that turns audio at
        ``sample_rate`` into this front end's log-mel frames and patches as they complete."""
        import torch

        dtype = dtype or torch.float32
        if self.kind == "musicnn":
            from coaudio.features.musicnn_mel import StreamingMusicnnMel

            return StreamingMusicnnMel(sample_rate, hop_frames=self.hop_frames, dtype=dtype)
        from coaudio.features.stream import StreamingLogMel

        return StreamingLogMel(sample_rate, hop_frames=self.hop_frames, dtype=dtype)

    def patches(self, frames):
        """``(F, n_mels)`` frames -> ``(P, patch_frames, n_mels)`` patches every ``hop_frames``."""
        from coaudio.features.logmel import patches

        return patches(frames, self.hop_frames, self.patch_frames)

    # --- the feature cache ------------------------------------------------------------------

    def cache_config(self):
        """What the feature cache stores for this front end: VGGish log-mel frames (any hop cuts
        patches from them; melstats tokens are summed up from them in a moment), or the tokens
        of a pretrained front end at this hop. ``weights``/``pca`` must be files here (the model
        store resolves names: :func:`coaudio.pretrained.frontends.resolve_frontend`)."""
        from coaudio.features.cache import FeatureConfig

        if self.kind not in PRETRAINED:
            return FeatureConfig()
        return FeatureConfig(
            kind=self.kind,
            hop_frames=self.hop_frames,
            weights=self.weights,
            pca=self.pca,
            layer=self.layer,
        )


LEGACY_NAMES = {"token_hop_frames": "hop_frames", "vggish_weights": "weights", "vggish_pca": "pca"}
LEGACY_KINDS = {"logmel": "learned"}


LEGACY_DATA_KEYS = ("features", "token_hop_frames", "vggish_weights", "vggish_pca")


def migrate_data(data: dict) -> dict:
    """A recipe's ``[data]`` table with the front-end fields that older recipes and run configs
    kept in it (``features``, ``token_hop_frames``, ``vggish_*``) moved into ``frontend``."""
    legacy = {k: data[k] for k in LEGACY_DATA_KEYS if k in data}
    if not legacy:
        return data
    rest = {k: v for k, v in data.items() if k not in legacy}
    return {**rest, "frontend": {**rest.get("frontend", {}), **migrate(legacy)}}  # the old keys were set last


def migrate(old: dict) -> dict:
    """A front-end table in the current spelling, from an old recipe's ``[data]`` keys or an old
    checkpoint's ``frontend`` dict (``features``, ``token_hop_frames``, ``vggish_*``)."""
    out = {}
    for key, value in old.items():
        if key == "features":
            out["kind"] = LEGACY_KINDS.get(value, value)
        else:
            out[LEGACY_NAMES.get(key, key)] = value
    return out
