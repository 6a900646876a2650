"""The pretrained models coaudio knows: what is downloaded, how it is checked, what it becomes.

Each model is plain data (:class:`ModelSpec`), so tests and mirrors can pass their own specs
to the store's functions. ``converter`` names the function in :mod:`coaudio.pretrained.convert`
that turns the downloaded files into safetensors; ``outputs`` names what it installs, by role.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnknownModel(KeyError):
    """A model name that is not in the registry; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class SourceFile:
    """One file that is downloaded for a model."""

    name: str  # the file's name: as served, and as looked for in a --from folder
    sha256: str  # 64 hex digits, or a prefix of them (torch.hub names carry the first 8)
    urls: tuple[str, ...] = ()  # where it is downloaded from, in order; empty: pip fetches it
    size: int | None = None  # bytes, where known exactly (then checked)
    approx_size: int | None = None  # bytes, for display only, where the exact size is unknown
    page: str = ""  # where a person gets it by hand (default: the first URL)

    @property
    def full_digest(self) -> bool:
        return len(self.sha256) == 64

    def by_hand(self) -> str:
        """Where to download this file by hand."""
        return self.page or (self.urls[0] if self.urls else self.name)


@dataclass(frozen=True)
class ModelSpec:
    """A pretrained model: its source files, licence and what the store installs."""

    name: str
    description: str
    licence: str  # SPDX identifier
    source: str  # where the weights come from, in words
    homepage: str
    files: tuple[SourceFile, ...]
    outputs: tuple[tuple[str, str], ...]  # (role, installed file name), e.g. ("weights", "x.safetensors")
    converter: str  # a key of coaudio.pretrained.convert.CONVERTERS
    pip_requirement: str = ""  # without --from, fetch the (single) file with `pip download` of this

    def output(self, role: str) -> str:
        """The installed file name of ``role``; ValueError for a role this model lacks."""
        for known, name in self.outputs:
            if known == role:
                return name
        roles = ", ".join(r for r, _ in self.outputs)
        raise ValueError(f"model {self.name!r} has no {role!r} file (it has: {roles})")

    @property
    def download_size(self) -> int | None:
        """Bytes to download (exact or approximate); None where unknown."""
        sizes = [f.size or f.approx_size for f in self.files]
        return None if None in sizes else sum(sizes)


TORCHVGGISH = "https://github.com/harritaylor/torchvggish/releases/download/v0.1"
MUSICNN_WHEEL = "musicnn-0.1.0-py3-none-any.whl"

VGGISH = ModelSpec(
    name="vggish",
    description="AudioSet VGGish embeddings (128-d per 0.96 s patch) and their PCA",
    licence="Apache-2.0",
    source="GitHub: the torchvggish v0.1 release (a port of Google's VGGish)",
    homepage="https://github.com/harritaylor/torchvggish",
    files=(
        # The names end in the first 8 hex digits of the files' SHA-256 (torch.hub's check);
        # the full digests are not published.
        SourceFile(
            "vggish-10086976.pth",
            "10086976",
            (f"{TORCHVGGISH}/vggish-10086976.pth",),
            approx_size=288_600_000,
        ),
        SourceFile(
            "vggish_pca_params-970ea276.pth",
            "970ea276",
            (f"{TORCHVGGISH}/vggish_pca_params-970ea276.pth",),
            approx_size=140_000,
        ),
    ),
    outputs=(("weights", "vggish.safetensors"), ("pca", "vggish_pca.safetensors")),
    converter="vggish",
)

MUSICNN = ModelSpec(
    name="musicnn",
    description="MSD_musicnn music tagger (50 Last.fm tags), converted from TensorFlow",
    licence="ISC",
    source="PyPI: the musicnn 0.1.0 wheel (its MSD_musicnn model)",
    homepage="https://github.com/jordipons/musicnn",
    files=(
        SourceFile(
            MUSICNN_WHEEL,
            "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
            size=29_292_476,
            page="https://pypi.org/project/musicnn/0.1.0/#files",
        ),
    ),
    outputs=(("weights", "musicnn.safetensors"), ("licence", "LICENSE-musicnn.md"), ("notice", "NOTICE")),
    converter="musicnn",
    pip_requirement="musicnn==0.1.0",
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (MUSICNN, VGGISH)}


def get_model(name: str) -> ModelSpec:
    """The registry's spec for ``name``; :class:`UnknownModel` names the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
