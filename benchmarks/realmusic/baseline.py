"""The classic baseline on the real-music check set: MFCC statistics + logistic regression.

    python benchmarks/realmusic/baseline.py OUT [--splits OUT/splits.csv] [--json]
    python benchmarks/realmusic/baseline.py OUT --features musicnn --cache DIR   # a linear probe

``--features musicnn``: instead of MFCCs, the clip mean of musicnn's max-pool features (753-d,
the tokens of the ``gtzan-musicnn`` recipe, one per 0.99 s; read through coaudio's feature cache
``--cache``, so a training run's tokens are reused): an offline linear probe of what the
pretrained network knows about the styles, next to the online transformer trained on the same
tokens.

Per clip: 20 MFCCs (librosa defaults at 16 kHz: 2048-point frames, hop 512, 128 mel bands),
their mean and standard deviation over time (40 numbers); standardised on the training
clips; a scikit-learn LogisticRegression fitted on train, its C chosen on valid from a small
grid. Reports valid and test accuracy per clip, test accuracy per class, and test accuracy
per recording (the majority vote of its clips), with clip and recording counts.

The split is the build's ``splits.csv`` (``path,split``); the label is a clip's top folder and
its recording the part of its file name before ``__`` (what ``--group '^[^/]+/(.+)__\\d+'``
captures), as ``coaudio train folder`` reads the same set.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
from threadpoolctl import threadpool_limits

SAMPLE_RATE = 16_000
N_MFCC = 20
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
SPLITS = ("train", "valid", "test")
RECORDING = re.compile(r"^[^/]+/(.+)__\d+")


class BaselineError(Exception):
    """A problem with the inputs; main prints it as one line."""


def read_splits(out: Path, splits_csv: Path) -> list[tuple[Path, str, str, str]]:
    """(file, split, label, recording) for every row of a ``path,split`` CSV."""
    if not splits_csv.is_file():
        raise BaselineError(f"{splits_csv}: no such file (run build.py {out} first, or pass --splits)")
    with open(splits_csv, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["path", "split"]:
            raise BaselineError(f"{splits_csv}: the header must be path,split (found {reader.fieldnames})")
        rows = list(reader)
    items = []
    for row in rows:
        rel, split = row["path"], row["split"]
        if split not in SPLITS:
            raise BaselineError(f"{splits_csv}: unknown split {split!r} for {rel}")
        found = RECORDING.match(rel)
        if found is None:
            raise BaselineError(f"{splits_csv}: {rel} is not <style>/<recording>__<nnn>.<ext>")
        path = Path(rel) if Path(rel).is_absolute() else out / rel
        items.append((path, split, rel.split("/", 1)[0], found.group(1)))
    if not items:
        raise BaselineError(f"{splits_csv}: no clips listed")
    return items


def mfcc_stats(path: Path) -> np.ndarray:
    """Mean and standard deviation over time of the clip's 20 MFCCs (40 numbers)."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    mfcc = librosa.feature.mfcc(y=mono, sr=SAMPLE_RATE, n_mfcc=N_MFCC)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])


def musicnn_means(paths: list[Path], cache: Path) -> dict[Path, np.ndarray]:
    """Per clip: the mean over its tokens of musicnn's max-pool features (753 numbers)."""
    from coaudio.features.cache import extract, load_entry
    from coaudio.features.frontend import FrontendConfig
    from coaudio.pretrained.frontends import resolve_frontend

    frontend = FrontendConfig(kind="musicnn", hop_frames=62, layer="max_pool")
    config = resolve_frontend(frontend).cache_config()
    summary = extract(paths, cache, config, jobs=1, bar=False)
    if summary.failed:
        raise BaselineError(f"{summary.failed[0].path}: {summary.failed[0].error}")
    return {p: load_entry(cache, config, p).mean(0).double().numpy() for p in paths}


def fit_and_choose(x: dict, y: dict) -> tuple[object, object, float, dict[float, float]]:
    """Standardise on train, fit one model per C, keep the best on valid (ties: smaller C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x["train"])
    train, valid = scaler.transform(x["train"]), scaler.transform(x["valid"])
    best, best_c, scores = None, None, {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=5000).fit(train, y["train"])
        scores[c] = float(np.mean(model.predict(valid) == y["valid"]))
        if best is None or scores[c] > scores[best_c]:
            best, best_c = model, c
    return scaler, best, best_c, scores


def vote_by_recording(recs: list[str], proba: np.ndarray, classes: np.ndarray) -> dict[str, str]:
    """Each recording's label: the most common clip prediction (ties: highest summed probability)."""
    votes: dict[str, Counter] = {}
    mass: dict[str, np.ndarray] = {}
    for rec, p in zip(recs, proba):
        votes.setdefault(rec, Counter())[classes[int(np.argmax(p))]] += 1
        mass[rec] = mass.get(rec, 0) + p
    decided = {}
    for rec, counter in votes.items():
        top = max(counter.values())
        tied = {label for label, n in counter.items() if n == top}
        order = np.argsort(-mass[rec])
        decided[rec] = next(classes[i] for i in order if classes[i] in tied)
    return decided


def run(out: Path, splits_csv: Path, threads: int, features: str = "mfcc", cache: Path | None = None) -> dict:
    """Features, fit, choice of C and every number the report shows."""
    items = read_splits(out, splits_csv)
    missing = [str(path) for path, *_ in items if not path.exists()]
    if missing:
        raise BaselineError(f"{len(missing)} listed clip(s) missing, e.g. {missing[0]}; build the set first")
    with threadpool_limits(limits=threads):  # 2 cores: BLAS threads only add overhead at this size
        started = time.perf_counter()
        if features == "musicnn":
            feats = musicnn_means([path for path, *_ in items], cache or out / ".coaudio-cache")
        else:
            feats = {path: mfcc_stats(path) for path, *_ in items}
        feature_s = time.perf_counter() - started
        x = {s: np.array([feats[p] for p, sp, *_ in items if sp == s]) for s in SPLITS}
        y = {s: np.array([label for _, sp, label, _ in items if sp == s]) for s in SPLITS}
        recs = {s: [rec for _, sp, _, rec in items if sp == s] for s in SPLITS}
        if any(len(x[s]) == 0 for s in SPLITS):
            raise BaselineError(f"{splits_csv}: every split needs clips")
        started = time.perf_counter()
        scaler, model, best_c, scores = fit_and_choose(x, y)
        fit_s = time.perf_counter() - started
        test_x = scaler.transform(x["test"])
        predicted = model.predict(test_x)
        decided = vote_by_recording(recs["test"], model.predict_proba(test_x), model.classes_)
    truth = dict(zip(recs["test"], y["test"]))
    classes = [str(c) for c in model.classes_]
    confusion = [[int(np.sum((y["test"] == t) & (predicted == p))) for p in classes] for t in classes]
    return {
        "features": (
            "musicnn max-pool (753), clip mean, standardised"
            if features == "musicnn"
            else f"MFCC({N_MFCC}) mean+std at {SAMPLE_RATE} Hz, standardised"
        ),
        "model": "LogisticRegression",
        "best_C": best_c,
        "valid_accuracy_by_C": {str(c): round(v, 4) for c, v in scores.items()},
        "valid_accuracy": scores[best_c],
        "test_accuracy": float(np.mean(predicted == y["test"])),
        "test_recording_accuracy": float(np.mean([decided[r] == truth[r] for r in decided])),
        "test_recordings_correct": int(sum(decided[r] == truth[r] for r in decided)),
        "per_class_test_accuracy": {c: float(np.mean(predicted[y["test"] == c] == c)) for c in classes},
        "clips": {s: {c: int(np.sum(y[s] == c)) for c in classes} for s in SPLITS},
        "recordings": {
            s: {c: len({r for r, label in zip(recs[s], y[s]) if label == c}) for c in classes} for s in SPLITS
        },
        "confusion_test": {"labels": classes, "rows_true_cols_predicted": confusion},
        "seconds": {"features": round(feature_s, 2), "fit": round(fit_s, 2)},
        "threads": threads,
    }


def table(result: dict) -> str:
    """The result as a small text table."""
    classes = result["confusion_test"]["labels"]
    width = max(len(c) for c in classes + ["class"])
    lines = [
        f"{result['features']} -> {result['model']} (C={result['best_C']:g}, chosen on valid)",
        "",
        f"{'class':<{width}}  clips train/valid/test  recordings train/valid/test  test acc",
    ]
    for c in classes:
        clips = "/".join(str(result["clips"][s][c]) for s in SPLITS)
        recs = "/".join(str(result["recordings"][s][c]) for s in SPLITS)
        lines.append(f"{c:<{width}}  {clips:>22}  {recs:>27}  {result['per_class_test_accuracy'][c]:8.3f}")
    n_test_recs = sum(result["recordings"]["test"].values())
    lines += [
        "",
        f"valid accuracy {result['valid_accuracy']:.3f}   test accuracy {result['test_accuracy']:.3f}   "
        f"test accuracy by recording (majority vote) {result['test_recording_accuracy']:.3f} "
        f"({result['test_recordings_correct']}/{n_test_recs})",
        f"features {result['seconds']['features']:.1f} s, fit {result['seconds']['fit']:.1f} s "
        f"({result['threads']} thread(s))",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: the table (or --json) on stdout; 1 with a one-line message on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder build.py wrote")
    parser.add_argument("--splits", type=Path, help="CSV path,split (default: OUT/splits.csv)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (default 1)")
    parser.add_argument("--features", choices=("mfcc", "musicnn"), default="mfcc", help="what a clip is")
    parser.add_argument(
        "--cache", type=Path, help="coaudio feature cache (musicnn; default OUT/.coaudio-cache)"
    )
    args = parser.parse_args(argv)
    try:
        result = run(
            args.out, args.splits or args.out / "splits.csv", args.threads, args.features, args.cache
        )
    except BaselineError as exc:
        print(f"baseline.py: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
