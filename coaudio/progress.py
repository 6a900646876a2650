"""Progress bars for Python callers of the library (tqdm.auto: a widget in notebooks, a text bar
in a terminal, nothing when stderr is not a terminal). The command line draws its own bars
with rich and passes callbacks instead, which turns these off."""

from __future__ import annotations


def bar(total: int | None, desc: str, unit: str, enabled: bool = True):
    """A tqdm bar, or None when ``enabled`` is false (the caller reports progress itself)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)


def advance(progress, n: int = 1, **postfix) -> None:
    """Move ``progress`` (a bar or None) on by ``n``, showing ``postfix`` next to it."""
    if progress is None:
        return
    if postfix:
        progress.set_postfix(postfix, refresh=False)
    progress.update(n)


def close(progress) -> None:
    if progress is not None:
        progress.close()
