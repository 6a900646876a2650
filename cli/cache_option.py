"""``--cache PATH`` of train and evaluate, checked before any work: a file, or a folder that
cannot be made, is one ``error:`` line, not a failure for every clip."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from coaudio_cli.errors import fail


def check_cache_option(cache: Optional[Path]) -> None:
    """Exit with ``error: --cache PATH: not a folder`` (or ``cannot create it (...)``) when
    ``cache`` cannot hold the feature cache; None (the default cache) passes."""
    if cache is None:
        return
    from coaudio.features.cache import CacheError, check_cache

    try:
        check_cache(cache, "--cache", create=False)
    except CacheError as exc:
        fail(exc)
