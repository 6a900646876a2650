"""Strict configuration: TOML tables into frozen dataclasses, dotted overrides.

Unknown keys and wrong types are errors that name the offending key, never silently ignored.
Overrides look like ``train.lr=3e-4`` and their values are TOML literals (``true``, ``12``,
``"text"``, ``[1, 2]``); a bare word that is not valid TOML is taken as a string.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that does not fit its dataclass."""


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``, recursively and strictly."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(data).__name__}")
    migrate = getattr(cls, "migrate_dict", None)  # a dataclass may read an older spelling
    if migrate is not None:
        data = migrate(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where + '.' if where else ''}{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})"
        )
    values = {
        name: _convert(hints[name], value, f"{where + '.' if where else ''}{name}")
        for name, value in data.items()
    }
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        return _convert(options[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = typing.get_args(hint)[0]
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is float and not math.isfinite(value):  # no setting means anything at inf or nan
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return value


def parse_overrides(pairs: list[str]) -> dict:
    """``["train.lr=3e-4", "model.encoder.n_layers=2"]`` -> a nested dict."""
    tree: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r}: expected section.key=value")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {pair!r}: {part} is not a table")
        node[parts[-1]] = value
    return tree


def merge(base: dict, overrides: dict) -> dict:
    """A copy of ``base`` with ``overrides`` applied (tables merged key by key)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load(cls: type[T], path: str | Path, overrides: list[str] = ()) -> T:
    """Read a TOML file into ``cls`` after applying dotted overrides."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return from_dict(cls, merge(data, parse_overrides(list(overrides))))


def to_dict(config: Any) -> dict:
    """The resolved configuration as plain data (for saving next to a run or checkpoint)."""
    return dataclasses.asdict(config)
