"""Getting a model's source files, verified: downloaded from their URLs or a mirror (resumably,
with :func:`coaudio.data.download.download`), taken from a local folder, or fetched by pip.

Downloads land in ``<downloads>/<file name>`` (``.partial`` while they arrive, so the next
fetch resumes) and are only used once their SHA-256 (or the prefix of it that a torch.hub file
name carries) matches; a mismatch deletes the download. Files in a user's ``--from`` folder
are checked in place and never deleted.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from coaudio.data.download import DownloadError, download
from coaudio.digests import sha256_of
from coaudio.pretrained.registry import ModelSpec, SourceFile

log = logging.getLogger(__name__)

OnBytes = Callable[[str, int, int | None], None]  # (file name, bytes so far, total or None)
URL_SCHEMES = ("http", "https", "ftp", "file")
PIP_TAIL = 400  # characters of pip's own error message kept in ours


class FetchError(DownloadError):
    """A model that could not be fetched or installed; the message says why (and, where
    useful, what to download by hand)."""


class Fetched(NamedTuple):
    """A verified source file, ready to convert."""

    file: SourceFile
    path: Path
    sha256: str  # the full digest of what was verified


def _matches(digest: str, file: SourceFile) -> bool:
    return digest.startswith(file.sha256.lower())  # a full digest, or the prefix a name carries


def _mismatch(where: str, digest: str, file: SourceFile) -> str:
    expected = file.sha256 if file.full_digest else f"a SHA-256 starting {file.sha256}"
    return f"{where}: checksum mismatch (expected {expected}, got {digest})"


def is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme.lower() in URL_SCHEMES


def gather(
    spec: ModelSpec, source: str | Path | None, downloads: Path, on_bytes: OnBytes | None
) -> list[Fetched]:
    """Every file of ``spec``, verified, from ``source``: None (the registry's URLs, or pip),
    a URL (a folder that holds the files, or the file itself for a one-file model), a local
    folder, or a local file (for a one-file model)."""
    if source is None:
        if spec.pip_requirement:
            return [_by_pip(spec, downloads, on_bytes)]
        return [_download(f, f.urls, downloads, on_bytes) for f in spec.files]
    text = str(source)
    if is_url(text):
        return [_download(f, (_url_for(text, f, spec),), downloads, on_bytes) for f in spec.files]
    path = Path(text).expanduser()
    if path.is_dir():
        return [_local(path / f.name, f) for f in spec.files]
    if path.is_file() and len(spec.files) == 1:
        return [_local(path, spec.files[0])]
    if path.is_file():
        names = " and ".join(f.name for f in spec.files)
        raise FetchError(f"{text} is a file; {spec.name} needs {names}: give the folder that holds them")
    scheme = urllib.parse.urlsplit(text).scheme
    if len(scheme) > 1:  # "c:" is a drive, not a scheme
        raise FetchError(f"{text}: the {scheme}: scheme is not supported (use {' or '.join(URL_SCHEMES)})")
    what = "folder or file" if len(spec.files) == 1 else "folder"
    raise FetchError(f"{text}: no such {what}, and not a URL")


def _url_for(base: str, file: SourceFile, spec: ModelSpec) -> str:
    """``base`` names a folder (add the file's name) or, for a one-file model, the file."""
    parts = urllib.parse.urlsplit(base)
    folder, _, last = parts.path.rpartition("/")
    names = {f.name for f in spec.files}
    if last in names:  # the URL of one of the files: its folder holds the others
        parts = parts._replace(path=folder + "/")
    elif len(spec.files) == 1 and last and Path(last).suffix == Path(file.name).suffix:
        return base  # e.g. a mirror's URL of the wheel under another name
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urllib.parse.urlunsplit(parts._replace(path=path + urllib.parse.quote(file.name)))


def _local(path: Path, file: SourceFile) -> Fetched:
    if not path.is_file():
        raise FetchError(f"{path.parent} has no {file.name}")
    digest = sha256_of(path)
    if not _matches(digest, file):
        raise FetchError(_mismatch(str(path), digest, file))
    return Fetched(file, path, digest)


def _kept(target: Path, file: SourceFile) -> Fetched | None:
    """A download finished and verified by an earlier fetch that was stopped before it could
    install (Ctrl-C during the conversion): used again if it still verifies."""
    if not target.is_file():
        return None
    digest = sha256_of(target)
    if _matches(digest, file):
        log.info("using %s, downloaded before", target)
        return Fetched(file, target, digest)
    target.unlink()
    return None


def _download(file: SourceFile, urls: tuple[str, ...], downloads: Path, on_bytes: OnBytes | None) -> Fetched:
    target = downloads / file.name
    kept = _kept(target, file)
    if kept is not None:
        return kept
    if not urls:
        raise FetchError(f"{file.name}: no URL is known for it")
    report = (lambda done, total: on_bytes(file.name, done, total)) if on_bytes else None
    failure: DownloadError | None = None
    for url in urls:
        try:
            log.info("downloading %s", url)
            download(url, target, file.sha256 if file.full_digest else None, on_bytes=report)
            break
        except DownloadError as exc:  # the next URL, if there is one
            failure = exc
    else:
        raise FetchError(str(failure))
    if file.full_digest:  # download() compared the whole digest already
        return Fetched(file, target, file.sha256.lower())
    digest = sha256_of(target)
    if not _matches(digest, file):
        target.unlink()
        raise FetchError(_mismatch(url, digest, file) + "; the file was removed")
    return Fetched(file, target, digest)


def _pip_failure(done: subprocess.CompletedProcess) -> str:
    """pip's own error lines (``ERROR: ...``), else the end of what it printed, as one line."""
    lines = [x.strip() for x in (done.stdout + "\n" + done.stderr).splitlines() if x.strip()]
    errors = [x.removeprefix("ERROR: ") for x in lines if x.startswith("ERROR:")] or lines[-3:]
    text = "; ".join(errors) or f"exit status {done.returncode}"
    return text if len(text) <= PIP_TAIL else "..." + text[-PIP_TAIL:]


def _by_pip(spec: ModelSpec, downloads: Path, on_bytes: OnBytes | None) -> Fetched:
    """``pip download`` of ``spec.pip_requirement``: the user's pip configuration (index URL,
    proxy, certificates) applies as it does to their installs."""
    (file,) = spec.files
    target = downloads / file.name
    kept = _kept(target, file)
    if kept is not None:
        return kept
    if on_bytes:
        on_bytes(file.name, 0, None)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        command += ["--no-input", "--dest", tmp, spec.pip_requirement]  # no prompt nobody would see
        log.info("running %s", shlex.join(command))
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise FetchError(f"pip could not download {spec.pip_requirement} ({_pip_failure(done)})")
        got = Path(tmp) / file.name
        if not got.is_file():
            found = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise FetchError(f"pip download {spec.pip_requirement} gave {found}, not {file.name}")
        digest = sha256_of(got)
        if not _matches(digest, file):
            raise FetchError(_mismatch(f"{file.name} from pip", digest, file) + "; the file was removed")
        os.replace(got, target)
    if on_bytes:
        size = target.stat().st_size
        on_bytes(file.name, size, size)
    return Fetched(file, target, digest)


def by_hand(spec: ModelSpec, folder: Path, dir_option: str) -> str:
    """What to do without a working download: which files to get from where, and how to
    install them (``dir_option``: the ``--dir ...`` the fetch needs, or empty)."""

    def one(f: SourceFile) -> str:
        if f.page and f.page != (f.urls[0] if f.urls else ""):
            return f"{f.name} (SHA-256 {f.sha256}) from {f.page}"
        return f.by_hand()

    files = " and ".join(one(f) for f in spec.files)
    into = "one folder" if len(spec.files) > 1 else "a folder"
    return (
        f"to install {spec.name} by hand, download {files} into {into}, then run "
        f"'coaudio models fetch {spec.name} --from FOLDER{dir_option}' "
        f"(it checks the files and installs {spec.name} into {folder})"
    )
