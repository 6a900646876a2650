"""A training recipe: what to read, which model, how to train. Loaded from TOML."""

from __future__ import annotations

from dataclasses import dataclass, field

from coaudio.continual import EncoderConfig, LayerConfig
from coaudio.features.frontend import FrontendConfig, migrate_data
from coaudio.train.augment import AugmentConfig
from coaudio.train.selection import SELECT

SPLITS = ("random", "filtered")


def _at_least(config, lowest: int, *names: str) -> None:
    for name in names:
        if getattr(config, name) < lowest:
            raise ValueError(f"{name} must be >= {lowest}, got {getattr(config, name)}")


@dataclass(frozen=True)
class DataConfig:
    frontend: FrontendConfig = field(default_factory=FrontendConfig)  # how audio becomes tokens
    split: str = "random"  # "random" (seeded 80/10/10), "filtered" (GTZAN fault-filtered)
    min_window: int = 1  # shortest training window, in tokens (short ones train early hops)
    windows_per_clip: int = 4  # random windows drawn from each clip per epoch
    eval_stride: int = 4  # clip prediction = mean probability over windows every this many hops

    def __post_init__(self) -> None:
        _at_least(self, 1, "min_window", "windows_per_clip", "eval_stride")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    migrate_dict = staticmethod(migrate_data)  # older recipes kept the front end's fields in [data]


@dataclass(frozen=True)
class ModelShape:
    token_dim: int = 128
    embedder_width: int = 8
    token_norm: bool = False  # fixed tokens: standardise each dimension with training-set statistics
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(
            layer=LayerConfig(d_model=64, n_heads=4, d_ff=128, dropout=0.1), n_layers=1, window=32
        )
    )

    def __post_init__(self) -> None:
        _at_least(self, 1, "token_dim", "embedder_width")


@dataclass(frozen=True)
class OptimConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = auto (idle cores / processes, see coaudio.threads)
    patience: int = 0  # stop after this many epochs without a better validation score; 0 = never
    select: str = "accuracy"  # the best epoch: validation "accuracy" or "loss" (coaudio.train.selection)
    label_smoothing: float = 0.0  # cross-entropy target smoothing (0 = one-hot targets)
    grad_clip: float = (
        1.0  # largest gradient norm per step (0 = no clipping); keeps a bad batch from derailing
    )
    warmup_epochs: int = 0  # learning rate grows linearly from 0 over these epochs' steps
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # see coaudio.train.augment

    def __post_init__(self) -> None:
        _at_least(self, 1, "epochs", "batch_size")
        _at_least(self, 0, "threads", "seed", "patience", "warmup_epochs")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {self.select!r}")
        if not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.lr > 0:  # also refuses NaN
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelShape = field(default_factory=ModelShape)
    train: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.model.encoder.positional == "absolute":  # the regular baseline cannot step
            raise ValueError(
                "model.encoder.positional = absolute gives a model that cannot stream (its "
                "positions move with the window); use recycling, the default"
            )
        if self.train.augment.changes_patches and self.frontend.model_inputs != "patches":
            raise ValueError(
                f"{', '.join(self.train.augment.patch_settings())}: masks, gain and EQ change log-mel "
                f"patches, but the {self.frontend.kind} front end's tokens are computed once; set "
                "them to 0 (only train.augment.mixup applies; --recipe gtzan-melstats does this)"
            )
        if self.model.token_norm and self.frontend.model_inputs != "tokens":
            raise ValueError(
                "model.token_norm standardises fixed tokens; the learned front end's patches are "
                "embedded by the model (set it to false)"
            )
        width = self.data.frontend.token_dim
        if width is not None and self.model.token_dim != width:
            raise ValueError(
                f"{self.data.frontend.kind} tokens are {width}-d: set model.token_dim = {width} "
                f"(--set model.token_dim={width})"
            )

    @property
    def frontend(self) -> FrontendConfig:
        return self.data.frontend
