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
  ``pca``), 128-d tokens computed once into the feature cache.

Older recipes, run configs and checkpoints spelled these fields differently
(``token_hop_frames``, ``features = "logmel"``, ``vggish_weights``...); :func:`migrate` reads
them, and nothing writes them any more.
"""

from __future__ import annotations

from dataclasses import dataclass

from coaudio.features.logmel import HOP_SAMPLES, PATCH_FRAMES, SAMPLE_RATE, WINDOW_SAMPLES

KINDS = ("learned", "melstats", "vggish")


@dataclass(frozen=True)
class FrontendConfig:
    kind: str = "learned"  # see the module docstring
    hop_frames: int = 25  # 10 ms log-mel frames between tokens (0.25 s)
    sample_rate: int = SAMPLE_RATE  # the log-mel's rate; input at any rate is resampled to it
    patch_frames: int = PATCH_FRAMES  # frames in one token's patch
    weights: str = ""  # vggish: local weight file (absolute once a run records it)
    pca: str = ""  # vggish: optional PCA file; embeddings are then post-processed

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.hop_frames < 1:
            raise ValueError(f"hop_frames must be >= 1, got {self.hop_frames}")
        if (self.sample_rate, self.patch_frames) != (SAMPLE_RATE, PATCH_FRAMES):
            raise ValueError(
                f"the {self.kind} front end reads {PATCH_FRAMES}-frame log-mel patches at "
                f"{SAMPLE_RATE} Hz (got {self.patch_frames} frames at {self.sample_rate} Hz)"
            )
        if self.kind == "vggish" and not self.weights:
            raise ValueError("kind = vggish needs weights (a local VGGish weight file)")
        if self.kind != "vggish" and (self.weights or self.pca):
            raise ValueError(f"weights and pca are for kind = vggish, not {self.kind}")

    @property
    def model_inputs(self) -> str:
        """What the classifier reads: "patches" (it embeds them) or "tokens" (embedded already)."""
        return "patches" if self.kind == "learned" else "tokens"

    @property
    def token_dim(self) -> int | None:
        """The width of precomputed tokens, or None when the model embeds them itself."""
        return None if self.kind == "learned" else 128  # melstats: 64 means + 64 stds

    # --- timing: the one place stream times come from -----------------------------------

    @property
    def hop_s(self) -> float:
        return self.hop_frames * HOP_SAMPLES / self.sample_rate

    @property
    def patch_s(self) -> float:
        """Audio the first token needs: a whole patch of frames."""
        return self.hop_end_s(0)

    def hop_start_s(self, hop: int) -> float:
        """Stream time of the first sample of hop ``hop``'s patch."""
        return hop * self.hop_frames * HOP_SAMPLES / self.sample_rate

    def hop_end_s(self, hop: int) -> float:
        """Stream time at which hop ``hop``'s audio is complete (its last frame's last sample)."""
        last_frame = hop * self.hop_frames + self.patch_frames - 1
        return (last_frame * HOP_SAMPLES + WINDOW_SAMPLES) / self.sample_rate

    def window_start_s(self, hop: int, window: int) -> float:
        """Stream time where the prediction of hop ``hop`` starts: its oldest of <= ``window`` tokens."""
        return self.hop_start_s(max(0, hop - window + 1))

    # --- the feature cache ------------------------------------------------------------------

    def cache_config(self):
        """What the feature cache stores for this front end: log-mel frames (any hop cuts
        patches from them; melstats tokens are summed up from them in a moment) or VGGish
        embeddings at this hop."""
        from coaudio.features.cache import FeatureConfig

        if self.kind != "vggish":
            return FeatureConfig()
        return FeatureConfig(
            kind="vggish", hop_frames=self.hop_frames, vggish_weights=self.weights, vggish_pca=self.pca
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
