"""The shipped training recipes, found by name (``synth``) or by path.

The TOML files live in the repository's ``recipes/`` folder, which installs as the data-only
package ``coaudio_recipes``; they are read with importlib.resources so that the same names work
from a clone, an editable install and a wheel. Loading stays with :func:`coaudio.config.load`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from coaudio.config import ConfigError

log = logging.getLogger(__name__)

PACKAGE = "coaudio_recipes"
SUFFIX = ".toml"


class RecipeNotFound(ConfigError):
    """Neither an existing recipe file nor the name of a shipped recipe."""


@dataclass(frozen=True)
class ShippedRecipe:
    name: str  # what --recipe accepts, e.g. "synth"
    description: str  # the file's leading comment, e.g. "The built-in synthetic genres ..."
    location: str  # where it is read from (a file path unless installed inside a zip)


def _files() -> dict[str, Traversable]:
    """The shipped recipe files by name, sorted by name."""
    found = {
        entry.name[: -len(SUFFIX)]: entry
        for entry in resources.files(PACKAGE).iterdir()
        if entry.name.endswith(SUFFIX) and entry.is_file()
    }
    return dict(sorted(found.items()))


def names() -> list[str]:
    """The names of the shipped recipes, e.g. ``["gtzan", "synth"]``."""
    return list(_files())


def description(text: str) -> str:
    """The first line of a recipe's leading comment block ("" when it starts with settings)."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
        if stripped:
            return ""  # the header ended: a later comment describes a setting, not the recipe
    return ""


def shipped() -> list[ShippedRecipe]:
    """Every shipped recipe with its description and location, sorted by name."""
    return [
        ShippedRecipe(name, description(entry.read_text(encoding="utf-8")), str(entry))
        for name, entry in _files().items()
    ]


def _shipped_file(name: str, problem: str = "no shipped recipe of that name") -> Traversable:
    """The shipped recipe called ``name`` (``synth`` or ``synth.toml``), else RecipeNotFound
    saying ``problem`` and listing the names that do exist."""
    files = _files()
    key = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if key in files:
        return files[key]
    raise RecipeNotFound(f"recipe {name!r}: {problem} {_known(files)}")


def _shipped_name(spec: str) -> bool:
    files = _files()
    return spec in files or spec.removesuffix(".toml") in files


def _known(files: dict[str, Traversable]) -> str:
    """The tail of a lookup error: which names would have worked."""
    return f"(shipped: {', '.join(files) or 'none'}; see coaudio recipes)"


def text(name: str) -> str:
    """The TOML text of the shipped recipe ``name``."""
    return _shipped_file(name).read_text(encoding="utf-8")


@contextlib.contextmanager
def locate(spec: str | Path) -> Iterator[Path]:
    """A readable file for ``spec``: an existing file path wins, else a shipped recipe's name.

    A context manager because a recipe inside a zipped install only exists as a file while
    importlib.resources keeps a temporary copy; for ordinary installs it is the file itself.
    """
    path = Path(spec)
    if path.is_file():
        yield path
        return
    # a folder is never a recipe: `--recipe gtzan` run beside a dataset folder called gtzan
    # means the shipped recipe
    if path.exists() and not (path.is_dir() and path.name == str(spec) and _shipped_name(str(spec))):
        raise RecipeNotFound(f"recipe {str(spec)!r}: not a file")
    if path.name != str(spec):  # a path with folders that is not there: not a name either
        raise RecipeNotFound(f"recipe {str(spec)!r}: no such file {_known(_files())}")
    shipped_file = _shipped_file(str(spec), "no such file, and no shipped recipe of that name")
    with resources.as_file(shipped_file) as found:
        log.info("recipe %s: %s", spec, found)
        yield found
