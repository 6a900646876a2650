"""Build the real-music check set from openly licensed music in Debian packages.

    python benchmarks/realmusic/build.py OUT [--minutes 20] [--seed 0] [--jobs 2]

Downloads the packages named in ``catalogue.py`` with ``apt-get download`` (no root needed)
into ``OUT/.downloads``, takes the listed music files out of them, checks every licence
against the package's copyright file, and writes:

* ``OUT/<style>/<recording>__<nnn>.flac``: consecutive 10-second clips (clip nnn starts at
  nnn * 10 s) of each recording, mono, 16 kHz, 16-bit; silent clips skipped;
* ``OUT/manifest.csv``: one row per clip (label, recording, package, version, licence, ...);
* ``OUT/splits.csv``: ``path,split``, a seeded 60/20/20 split over recordings per style;
* ``OUT/LICENSES.md`` (and the full copyright files in ``OUT/.licenses/``).

Run it again and it skips what is done: downloads, extraction and each recording's clips are
cached, and every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import catalogue
import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
CLIP_SECONDS = 10
TARGET_DBFS = -20.0  # every recording is brought to this RMS level (see normalise)
SILENCE_DBFS = -50.0  # a clip this far below the target level is silence, not music
PEAK = 0.99  # headroom for the 16-bit FLAC
SPLIT_SHARES = (0.6, 0.2, 0.2)
# Bump when the way clips are made changes: cached clips made the old way are then redone.
CLIP_RECIPE = f"v1 sr={SAMPLE_RATE} clip={CLIP_SECONDS} level={TARGET_DBFS} silence={SILENCE_DBFS}"

START = time.monotonic()


class BuildError(Exception):
    """A problem the user must fix; main prints it as one line."""


def log(message: str) -> None:
    """Progress on stderr, with the seconds since the start."""
    print(f"[{time.monotonic() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """``write_atomic`` for text (UTF-8)."""
    write_atomic(path, text.encode("utf-8"))


# --- packages: download, extract, licences -------------------------------------------------------


def download(package: str, cache: Path) -> Path:
    """The package's .deb in ``cache``, fetched with ``apt-get download`` unless already there."""
    cached = sorted(cache.glob(f"{package}_*.deb"))
    if cached:
        return cached[-1]
    if shutil.which("apt-get") is None:
        raise BuildError("apt-get not found: the music comes from Debian packages, build on Debian or Ubuntu")
    log(f"download {package}")
    # apt-get writes into its working directory; a fresh folder per package keeps a download
    # that was cut off from ever looking like a finished .deb in the cache.
    partial = cache / f".partial-{package}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    done = subprocess.run(["apt-get", "download", package], cwd=partial, capture_output=True, text=True)
    debs = list(partial.glob("*.deb"))
    if done.returncode != 0 or len(debs) != 1:
        errors = [line for line in done.stderr.splitlines() if line.startswith("E:")]
        reason = (errors or done.stderr.strip().splitlines() or ["no .deb written"])[-1]
        shutil.rmtree(partial, ignore_errors=True)
        raise BuildError(f"cannot download Debian package {package}: {reason} (is `apt-get update` done?)")
    target = cache / debs[0].name
    os.replace(debs[0], target)
    partial.rmdir()
    return target


def deb_version(deb: Path) -> str:
    """The Version field of a .deb."""
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def local_path(root: Path, path: str) -> Path:
    """Where ``path`` (``outer!inner`` for a file inside a zip) lies once extracted under ``root``."""
    outer, _, inner = path.partition("!")
    return root / (outer + ".d") / inner if inner else root / outer


def copyright_path(package: catalogue.Package) -> str:
    """The Debian copyright file of a package, as a path inside it."""
    return f"usr/share/doc/{package.name}/copyright"


def needed_paths(package: catalogue.Package) -> list[str]:
    """Every file ``build.py`` reads from the package: audio, stems and licence files."""
    paths = {copyright_path(package)}
    for rec in package.recordings:
        paths.update((rec.path, *rec.stems))
    paths.update(lic.file for lic in package.licences if lic.file)
    return sorted(paths)


def extract(package: catalogue.Package, deb: Path, cache: Path) -> Path:
    """The needed files of ``deb``, extracted to ``cache/<package>`` (skipped when already done)."""
    root = cache / package.name
    wanted = needed_paths(package)
    marker = root / ".extracted.json"
    stamp = {"deb": deb.name, "paths": wanted}
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return root
    log(f"extract {package.name} ({deb.stat().st_size / 1e6:.0f} MB)")
    partial = cache / f".partial-{package.name}"
    shutil.rmtree(partial, ignore_errors=True)
    outer = {path.partition("!")[0] for path in wanted}
    _untar_members(deb, outer, partial)
    for archive in sorted({p.partition("!")[0] for p in wanted if "!" in p}):
        inner = [p.partition("!")[2] for p in wanted if p.partition("!")[0] == archive]
        _unzip_members(partial / archive, inner, partial / (archive + ".d"), f"{deb.name}:{archive}")
        (partial / archive).unlink()  # only its few members are needed; 0 A.D.'s zip is 3 GB
    write_text_atomic(partial / ".extracted.json", json.dumps(stamp, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(partial, root)
    return root


def _untar_members(deb: Path, members: set[str], dest: Path) -> None:
    """Stream the data archive of ``deb`` and write the regular files named in ``members``."""
    dest.mkdir(parents=True)
    reader = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    found: set[str] = set()
    with tarfile.open(fileobj=reader.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name not in members:
                continue
            if not member.isfile():
                raise BuildError(f"{deb.name}: {name} is not a regular file in the package")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            found.add(name)
    if reader.wait() != 0:
        raise BuildError(f"{deb.name}: dpkg-deb could not read the package (a damaged download? delete it)")
    missing = sorted(members - found)
    if missing:
        raise BuildError(f"{deb.name} has no {missing[0]} (another package version? see catalogue.py)")


def _unzip_members(archive: Path, members: list[str], dest: Path, label: str) -> None:
    """Extract ``members`` of a zip (a game's .pk3/.zip data archive) into ``dest``."""
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        for member in members:
            if member not in names:
                raise BuildError(f"{label} has no {member} (another package version? see catalogue.py)")
            target = dest / member
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def _squash(text: str) -> str:
    """Whitespace collapsed, so a phrase matches across the line breaks of a copyright file."""
    return " ".join(text.split())


def paragraphs_from(text: str, anchor: str, count: int) -> str | None:
    """``count`` blank-line separated paragraphs of ``text``, from the one holding ``anchor``."""
    lines = text.splitlines()
    hit = next((i for i, line in enumerate(lines) if anchor in line), None)
    if hit is None:
        return None
    start = hit
    while start > 0 and lines[start - 1].strip():
        start -= 1
    end, seen = hit, 0
    while end < len(lines):
        if not lines[end].strip():
            seen += 1
            if seen == count:
                break
            while end + 1 < len(lines) and not lines[end + 1].strip():
                end += 1  # several blank lines still end one paragraph
        end += 1
    return "\n".join(lines[start:end]).rstrip()


def licence_excerpts(package: catalogue.Package, root: Path) -> list[tuple[catalogue.Licence, str]]:
    """Each licence statement of the package, checked, with the paragraph that makes it."""
    excerpts = []
    for lic in package.licences:
        source = lic.file or copyright_path(package)
        text = local_path(root, source).read_text(encoding="utf-8", errors="replace")
        excerpt = paragraphs_from(text, lic.anchor, lic.paragraphs)
        if excerpt is None:
            raise BuildError(f"{package.name}: {source} no longer says {lic.anchor!r}; check its licence")
        if _squash(lic.proof) not in _squash(excerpt):
            raise BuildError(f"{package.name}: {source} near {lic.anchor!r} does not say {lic.proof!r}")
        if lic.per_file:
            for rec in package.recordings:
                if rec.licence == lic.name and Path(rec.path).name not in excerpt:
                    raise BuildError(f"{package.name}: {source} does not list {rec.path} under {lic.name}")
        excerpts.append((lic, excerpt))
    return excerpts


# --- audio: decode, level, cut -------------------------------------------------------------------


def read_mono(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """A file as mono float32 at SAMPLE_RATE, and its title/artist tags."""
    with sf.SoundFile(path) as f:
        tags = {key: getattr(f, key) for key in ("title", "artist", "album") if getattr(f, key, "")}
        audio = f.read(dtype="float32", always_2d=True)
        rate = f.samplerate
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return mono.astype(np.float32), tags


def mix(parts: list[np.ndarray]) -> np.ndarray:
    """Stems summed (the shorter padded with silence), as the band's full mix."""
    out = np.zeros(max(len(p) for p in parts), dtype=np.float32)
    for part in parts:
        out[: len(part)] += part
    return out


def normalise(audio: np.ndarray) -> np.ndarray:
    """The recording at TARGET_DBFS RMS, or quieter where its peak would clip.

    Packages are mastered at very different levels; without this, loudness alone would
    tell the sources (and so often the styles) apart.
    """
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    peak = float(np.max(np.abs(audio)))
    if rms == 0.0:
        return audio
    gain = min(10 ** (TARGET_DBFS / 20) / rms, PEAK / peak)
    return (audio * gain).astype(np.float32)


def audible_clips(audio: np.ndarray) -> list[int]:
    """Indices of the whole CLIP_SECONDS clips that are not silence (the remainder is dropped)."""
    size = SAMPLE_RATE * CLIP_SECONDS
    floor = 10 ** (SILENCE_DBFS / 20)
    keep = []
    for k in range(len(audio) // size):
        clip = audio[k * size : (k + 1) * size]
        if np.sqrt(np.mean(np.square(clip, dtype=np.float64))) >= floor:
            keep.append(k)
    return keep


def spread(indices: list[int], limit: int) -> list[int]:
    """At most ``limit`` of ``indices``, evenly spaced over the recording (not just its intro)."""
    if len(indices) <= limit:
        return indices
    return [indices[int((i + 0.5) * len(indices) / limit)] for i in range(limit)]


def clip_counts(recs: list[tuple[catalogue.Recording, Path]]) -> dict[str, int]:
    """Whole clips per recording, from the file headers (no decoding)."""
    return {rec.rec: int(sf.info(str(path)).duration // CLIP_SECONDS) for rec, path in recs}


def allocate(counts: dict[str, int], cap: int | None) -> dict[str, int]:
    """Clips to take per recording so a style stays within ``cap`` clips, spread evenly.

    Water-filling: the largest equal share L that fits, short recordings keeping all they
    have; what is left over goes one clip at a time to the longer ones, in catalogue order.
    Many recordings with a few clips each make a grouped split far more telling than a
    few long ones.
    """
    if cap is None or sum(counts.values()) <= cap:
        return dict(counts)
    level = 0
    while sum(min(n, level + 1) for n in counts.values()) <= cap:
        level += 1
    limits = {rec: min(n, level) for rec, n in counts.items()}
    left = cap - sum(limits.values())
    for rec, n in counts.items():
        if left and n > limits[rec]:
            limits[rec] += 1
            left -= 1
    return limits


@dataclass(frozen=True)
class Job:
    """One recording to cut, as a worker process gets it."""

    rec: catalogue.Recording
    package: str
    version: str
    sources: tuple[Path, ...]  # main file first, then stems
    limit: int
    out: Path
    state: Path  # the recording's cache marker


def cut_recording(job: Job) -> dict:
    """Write the recording's clips (or reuse them) and return its manifest rows and tags."""
    key = hashlib.sha256(
        f"{CLIP_RECIPE}|{job.package}={job.version}|{job.rec.path}|{job.rec.stems}|{job.limit}".encode()
    ).hexdigest()
    style_dir = job.out / job.rec.style
    if job.state.exists():
        done = json.loads(job.state.read_text())
        if done["key"] == key and all((job.out / row["path"]).exists() for row in done["rows"]):
            return done | {"reused": True}
    for old in style_dir.glob(f"{job.rec.rec}__*.flac"):
        old.unlink()
    parts = [read_mono(path) for path in job.sources]
    audio = normalise(mix([p[0] for p in parts]))
    picked = spread(audible_clips(audio), job.limit)
    size = SAMPLE_RATE * CLIP_SECONDS
    rows = []
    for k in picked:
        rel = f"{job.rec.style}/{job.rec.rec}__{k:03d}.flac"
        target = job.out / rel
        tmp = target.with_name(f".{target.name}.tmp")
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp, audio[k * size : (k + 1) * size], SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        os.replace(tmp, target)
        rows.append(
            {
                "path": rel,
                "label": job.rec.style,
                "recording": job.rec.rec,
                "package": job.package,
                "package_version": job.version,
                "source_file": " + ".join((job.rec.path, *job.rec.stems)),
                "licence": job.rec.licence,
                "start_s": k * CLIP_SECONDS,
                "duration_s": CLIP_SECONDS,
            }
        )
    done = {"key": key, "rows": rows, "tags": parts[0][1], "seconds": round(len(audio) / SAMPLE_RATE, 1)}
    write_text_atomic(job.state, json.dumps(done, indent=1, ensure_ascii=False))
    return done | {"reused": False}


# --- the split and the written files -------------------------------------------------------------


def assign_splits(recs_by_style: dict[str, list[str]], seed: int) -> dict[str, str]:
    """Recording -> train/valid/test: per style, seeded, about 60/20/20, each split non-empty."""
    split = {}
    for style, recs in sorted(recs_by_style.items()):
        if len(recs) < 3:
            raise BuildError(f"style {style} has {len(recs)} recording(s); a split needs at least 3")
        order = sorted(recs)
        random.Random(f"{seed}/{style}").shuffle(order)  # a str seed is stable across runs
        n_valid = max(1, round(SPLIT_SHARES[1] * len(order)))
        n_test = max(1, round(SPLIT_SHARES[2] * len(order)))
        n_valid = min(n_valid, len(order) - n_test - 1)  # train keeps at least one
        for i, rec in enumerate(order):
            split[rec] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return split


def csv_text(header: list[str], rows: list[dict]) -> str:
    """Rows as CSV text with ``header``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


MANIFEST_HEADER = [
    "path",
    "label",
    "recording",
    "package",
    "package_version",
    "source_file",
    "licence",
    "start_s",
    "duration_s",
]


def licences_markdown(sections: list[dict]) -> str:
    """LICENSES.md: per package its licence statements and the files used from it."""
    lines = [
        "# Licences of the real-music check set",
        "",
        "Every clip here is an excerpt of music shipped in a Debian package (main). The clips are",
        "adaptations (mono, 16 kHz, level-normalised 10-second excerpts; Frets on Fire songs mixed",
        "from their backing and guitar stems), so each file's licence below applies to its clips,",
        "share-alike terms included. Credit the authors named here when you pass the clips on.",
        "The full copyright file of each package is in `.licenses/<package>.copyright`.",
        "",
    ]
    for section in sections:
        package = section["package"]
        lines += [
            f"## {package.name} {section['version']}",
            "",
            f"Music by: {package.credit}.",
            "",
            f"Licences used: {', '.join(sorted({r.licence for r in package.recordings}))}.",
            "",
        ]
        for lic, excerpt in section["excerpts"]:
            source = lic.file or copyright_path(package)
            lines += [f"{lic.name}, from `{source}`:", "", "```text", excerpt, "```", ""]
        lines += ["| recording | style | file | tags | licence |", "|---|---|---|---|---|"]
        for rec, tags in section["files"]:
            shown = "; ".join(f"{k}: {v}" for k, v in tags.items()).replace("|", "/")
            lines.append(f"| {rec.rec} | {rec.style} | `{rec.path}` | {shown} | {rec.licence} |")
        lines.append("")
    return "\n".join(lines)


def prune(out: Path, keep: set[str]) -> int:
    """Delete clips this script made earlier that the manifest no longer lists."""
    removed = 0
    for path in out.glob("*/*__*.flac"):
        rel = path.relative_to(out).as_posix()
        if not rel.startswith(".") and rel not in keep:
            path.unlink()
            removed += 1
    return removed


def summary(rows: list[dict], split: dict[str, str]) -> str:
    """Minutes, recordings and clips per style and split, as a small text table."""
    lines = [f"{'style':<11} {'minutes':>7} {'recs':>5}   train/valid/test recs   train/valid/test clips"]
    for style in catalogue.STYLES:
        mine = [r for r in rows if r["label"] == style]
        recs = {r["recording"] for r in mine}
        by_split = {s: {r for r in recs if split[r] == s} for s in ("train", "valid", "test")}
        clips = {s: sum(1 for r in mine if split[r["recording"]] == s) for s in by_split}
        lines.append(
            f"{style:<11} {len(mine) * CLIP_SECONDS / 60:7.1f} {len(recs):5d}   "
            f"{'/'.join(str(len(by_split[s])) for s in by_split):>21}   "
            f"{'/'.join(str(clips[s]) for s in clips):>22}"
        )
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (keep it outside the repository)")
    parser.add_argument(
        "--minutes", type=float, default=20.0, help="cap per style in minutes (0: no cap; default 20)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/valid/test split (default 0)")
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes that decode (default 2)"
    )
    return parser.parse_args(argv)


def prepare_packages(cache: Path) -> list[dict]:
    """Download, extract and licence-check every package; per package what the build needs."""
    prepared = []
    for package in catalogue.PACKAGES:
        deb = download(package.name, cache)
        root = extract(package, deb, cache)
        excerpts = licence_excerpts(package, root)
        prepared.append({"package": package, "version": deb_version(deb), "root": root, "excerpts": excerpts})
    return prepared


def plan_jobs(prepared: list[dict], out: Path, cache: Path, minutes: float) -> list[Job]:
    """One job per recording, with each style's clip budget spread over its recordings."""
    cap = None if minutes <= 0 else int(round(minutes * 60 / CLIP_SECONDS))
    jobs = []
    for style in catalogue.STYLES:
        members = [(p, rec) for p in prepared for rec in p["package"].recordings if rec.style == style]
        counts = clip_counts([(rec, local_path(p["root"], rec.path)) for p, rec in members])
        limits = allocate(counts, cap)
        for p, rec in members:
            sources = tuple(local_path(p["root"], path) for path in (rec.path, *rec.stems))
            state = cache / "clips" / f"{rec.rec}.json"
            jobs.append(Job(rec, p["package"].name, p["version"], sources, limits[rec.rec], out, state))
    return jobs


def run_jobs(jobs: list[Job], workers: int) -> dict[str, dict]:
    """Cut every recording (in ``workers`` processes); results by recording id."""
    results: dict[str, dict] = {}
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(cut_recording, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            result = future.result()
            results[job.rec.rec] = result
            how = "cached" if result["reused"] else f"{result['seconds']:.0f} s decoded"
            name = f"{job.rec.style}/{job.rec.rec}"
            log(f"clips {len(results):3d}/{len(jobs)} {name}: {len(result['rows'])} ({how})")
    return results


def build(args: argparse.Namespace) -> None:
    """The whole build; see the module docstring."""
    catalogue.check()
    out = args.out.resolve()
    cache = out / ".downloads"
    cache.mkdir(parents=True, exist_ok=True)
    prepared = prepare_packages(cache)
    jobs = plan_jobs(prepared, out, cache, args.minutes)
    results = run_jobs(jobs, args.jobs)
    rows = [row for job in jobs for row in results[job.rec.rec]["rows"]]
    recs_by_style: dict[str, list[str]] = {}
    for job in jobs:
        if results[job.rec.rec]["rows"]:
            recs_by_style.setdefault(job.rec.style, []).append(job.rec.rec)
    split = assign_splits(recs_by_style, args.seed)
    write_text_atomic(out / "manifest.csv", csv_text(MANIFEST_HEADER, rows))
    write_text_atomic(
        out / "splits.csv",
        csv_text(["path", "split"], [{"path": r["path"], "split": split[r["recording"]]} for r in rows]),
    )
    for p in prepared:
        text = local_path(p["root"], copyright_path(p["package"])).read_text(
            encoding="utf-8", errors="replace"
        )
        write_text_atomic(out / ".licenses" / f"{p['package'].name}.copyright", text)
        p["files"] = [(rec, results[rec.rec]["tags"]) for rec in p["package"].recordings]
    write_text_atomic(out / "LICENSES.md", licences_markdown(prepared))
    removed = prune(out, {r["path"] for r in rows})
    if removed:
        log(f"removed {removed} clip(s) of an earlier build that the manifest no longer lists")
    print(summary(rows, split), file=sys.stderr)
    log(f"done: {len(rows)} clips of {len(jobs)} recordings in {out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success, 1 with a one-line message on a known failure."""
    args = parse_args(argv)
    try:
        build(args)
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build.py: interrupted; run the same command again to go on", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
