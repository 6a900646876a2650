"""Streams ``coaudio serve`` pulls itself: ``--source NAME=URL`` and ``--source NAME=mic:DEVICE``.

:func:`parse_source` turns a ``--source`` value into a :class:`PulledSource`; the server calls
its ``start(hub)`` before serving and ``stop()`` at shutdown. How sources connect, drop and
reconnect is in :mod:`coaudio.serve.source_base`; URLs (through ffmpeg) in
:mod:`coaudio.serve.source_url`, input devices in :mod:`coaudio.serve.source_mic`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from coaudio.serve.protocol import ProtocolError, check_name
from coaudio.serve.source_base import Backoff, PulledSource, SourceError
from coaudio.serve.source_mic import MicSource
from coaudio.serve.source_url import SCHEMES, UrlSource

__all__ = ["Backoff", "MicSource", "PulledSource", "SourceError", "UrlSource", "parse_source"]

FORMS = "NAME=URL (http://, https:// or rtsp://) or NAME=mic:DEVICE (mic: alone: the default device)"


def parse_source(spec: str) -> PulledSource:
    """``NAME=URL`` or ``NAME=mic:DEVICE`` -> its source (not started); :class:`SourceError`
    saying what is wrong otherwise."""
    name, equals, target = spec.partition("=")
    if not equals:
        raise SourceError(f"{spec!r} has no '=': give {FORMS}")
    try:
        check_name(name)
    except ProtocolError as exc:
        raise SourceError(f"{spec!r}: {exc}") from None
    if target == "mic" or target.startswith("mic:"):
        return MicSource(name, target[len("mic:") :])
    try:
        parts = urlsplit(target)
        host, _ = parts.hostname, parts.port  # .port raises for a port that is no number
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address, a port that is no number
        raise SourceError(f"{spec!r}: {target!r} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise SourceError(f"{spec!r}: {target!r} is not a URL ffmpeg can pull here; give {FORMS}")
    if not host:
        raise SourceError(f"{spec!r}: the URL {target!r} names no host")
    return UrlSource(name, target)
