"""Downloading and unpacking dataset archives: resumable, verified, safe, idempotent.

* The archive is downloaded to ``<name>.partial``; an interrupted download resumes with an
  HTTP Range request (a server that ignores Range starts over).
* The finished file is checked against its SHA-256 before anything else happens; a mismatch
  deletes it and raises.
* Extraction refuses members that would land outside the target folder (absolute paths,
  ``..``, links, devices) and happens in a temporary folder that is renamed into place.
* A marker file records what was installed; running again with the same archive does nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

MARKER = ".coaudio-complete"
CHUNK = 1 << 20
# The original GTZAN archive (marsyas); mirrors change, so the URL is a parameter.
GTZAN_URL = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
GTZAN_SHA256 = "24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6"


class DownloadError(Exception):
    """A download or archive that cannot be used; the message says why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str | None = None, timeout: float = 60.0,
             on_bytes: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``target`` (resuming ``target.partial``), verify, rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    total = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have > 0 and response.status == 206
            if have and not resumed:
                log.info("server ignored the range request; starting %s over", url)
            length = response.headers.get("Content-Length")
            total = (int(length) + (have if resumed else 0)) if length else None
            done = have if resumed else 0
            with open(partial, "ab" if resumed else "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    done += len(block)
                    if on_bytes is not None:
                        on_bytes(done, total)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already complete
            pass
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DownloadError(f"{url}: download interrupted ({exc}); run again to resume") from None
    if total is not None and partial.stat().st_size < total:
        raise DownloadError(f"{url}: got {partial.stat().st_size} of {total} bytes; run again to resume")
    if sha256:
        actual = sha256_of(partial)
        if actual != sha256.lower():
            partial.unlink()
            raise DownloadError(f"{url}: checksum mismatch (expected {sha256}, got {actual}); "
                                "the file was removed")
    os.replace(partial, target)
    return target


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
                    if name.startswith("/") or not (staging / name).resolve().is_relative_to(staging.resolve()):
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


def fetch(url: str, out: Path, sha256: str | None = None,
          on_bytes: Callable[[int, int | None], None] | None = None) -> bool:
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
