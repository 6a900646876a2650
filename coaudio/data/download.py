"""Downloading and unpacking dataset archives: resumable, verified, safe, idempotent.

* The archive is downloaded to ``<name>.partial``; an interrupted download resumes with an
  HTTP Range request (a server that ignores Range starts over). A server that cannot be
  reached (a name that does not resolve, a refused connection) is reported as such, not as
  an interruption: there is nothing to resume.
* The finished file is checked against its SHA-256 before anything else happens; a mismatch
  deletes it and raises.
* Extraction refuses members that would land outside the target folder (absolute paths,
  ``..``, links, devices) and happens in a temporary folder that is renamed into place.
* A marker file records what was installed; running again with the same archive does nothing.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from coaudio.digests import sha256_of

log = logging.getLogger(__name__)

MARKER = ".coaudio-complete"
CHUNK = 1 << 20
# The original GTZAN archive (marsyas); mirrors change, so the URL is a parameter.
GTZAN_URL = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
GTZAN_SHA256 = "24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6"


class DownloadError(Exception):
    """A download or archive that cannot be used; the message says why."""


def download(
    url: str,
    target: Path,
    sha256: str | None = None,
    timeout: float = 60.0,
    on_bytes: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``target`` (resuming ``target.partial``), verify, rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    have = partial.stat().st_size if partial.exists() else 0
    try:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and have):  # 416 on a resume: the partial file is already complete
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        total = None
    except urllib.error.URLError as exc:  # no answer at all: nothing to resume
        raise _unreachable(url, exc.reason) from None
    except (OSError, http.client.HTTPException) as exc:  # e.g. a timeout before the headers came
        raise _unreachable(url, exc) from None
    except ValueError as exc:  # not a URL at all, e.g. a bare file name
        raise DownloadError(f"{url}: not a usable URL ({exc})") from None
    else:
        with response:
            total = _receive(url, response, partial, have, on_bytes)
    got = partial.stat().st_size
    if total is not None and got < total:
        raise DownloadError(
            f"{url}: download interrupted after {_size(got)} of {_size(total)}; run again to resume"
        )
    if sha256:
        actual = sha256_of(partial)
        if actual != sha256.lower():
            partial.unlink()
            raise DownloadError(
                f"{url}: checksum mismatch (expected {sha256}, got {actual}); the file was removed"
            )
    os.replace(partial, target)
    return target


def _receive(
    url: str, response, partial: Path, have: int, on_bytes: Callable[[int, int | None], None] | None
) -> int | None:
    """Write the body to ``partial`` (appending if the server honoured the Range request);
    returns the whole file's size if the server said it."""
    resumed = have > 0 and response.status == 206
    if have and not resumed:
        log.info("server ignored the range request; starting %s over", url)
    length = response.headers.get("Content-Length")
    total = (int(length) + (have if resumed else 0)) if length else None
    done = start = have if resumed else 0
    with open(partial, "ab" if resumed else "wb") as out:
        while True:
            try:
                block = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                if done == start:  # not a byte of the file came: no progress to speak of
                    raise _unreachable(url, exc) from None
                raise DownloadError(
                    f"{url}: download interrupted after {_size(done)}"
                    f"{f' of {_size(total)}' if total else ''} ({_why(exc)}); "
                    "run again to resume"
                ) from None
            if not block:
                return total
            try:
                out.write(block)
            except OSError as exc:  # our side (a full disk), not the network's
                raise DownloadError(f"cannot write {partial}: {_why(exc)}") from None
            done += len(block)
            if on_bytes is not None:
                on_bytes(done, total)


def _unreachable(url: str, reason: object) -> DownloadError:
    """The error for a server that never answered: there is nothing to resume."""
    host = urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or url  # never echo user:password
    if isinstance(reason, socket.gaierror):
        return DownloadError(
            f"cannot reach {host}: the name could not be resolved (no network, or a wrong URL?)"
        )
    return DownloadError(f"cannot reach {host}: {_why(reason)}")


def _why(reason: object) -> str:
    """An OS error as its plain words ("connection refused"), anything else as its text."""
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return text[:1].lower() + text[1:]


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _safe_members(archive: tarfile.TarFile, root: Path) -> list[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        destination = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()):
            raise DownloadError(f"refusing archive member {member.name!r}: not a plain file or folder")
        if member.name.startswith("/") or not destination.is_relative_to(root.resolve()):
            raise DownloadError(f"refusing archive member {member.name!r}: it would land outside {root}")
        members.append(member)
    return members


def extract(archive: Path, out: Path) -> None:
    """Unpack a .tar(.gz/.bz2/.xz) or .zip into ``out`` without escaping it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.extracting-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if name.startswith("/") or not (staging / name).resolve().is_relative_to(
                        staging.resolve()
                    ):
                        raise DownloadError(f"refusing archive member {name!r}: it would land outside {out}")
                z.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                t.extractall(staging, members=_safe_members(t, staging), filter="data")
        else:
            raise DownloadError(f"{archive}: neither a tar nor a zip archive")
        out.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(
    url: str, out: Path, sha256: str | None = None, on_bytes: Callable[[int, int | None], None] | None = None
) -> bool:
    """Download and unpack ``url`` into ``out`` once; returns False if it was already there."""
    out = Path(out)
    marker = out / MARKER
    record = {"url": url, "sha256": sha256}
    if marker.exists() and json.loads(marker.read_text()) == record:
        return False
    name = Path(urllib.request.urlparse(url).path).name or "archive"
    archive = download(url, out.parent / f".{out.name}.{name}", sha256, on_bytes=on_bytes)
    extract(archive, out)
    marker.write_text(json.dumps(record))
    archive.unlink()
    return True
