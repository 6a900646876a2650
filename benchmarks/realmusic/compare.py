"""Compare models on the real-music check set, on one grouped split: the evidence table.

    python benchmarks/realmusic/compare.py /work/realmusic --runs /work/realmusic-runs
    python benchmarks/realmusic/compare.py /work/realmusic --runs DIR --only melstats,learned
    python benchmarks/realmusic/compare.py /work/realmusic --runs DIR --markdown   # README table
    python benchmarks/realmusic/compare.py /work/realmusic --runs DIR --seeds 0,1,2  # several splits

Rows (each a real ``coaudio train folder SET --splits SET/splits.csv`` run, then ``coaudio
evaluate`` on the test recordings; finished runs are reused, so a second call only prints):

* ``mfcc-logreg``: ``baseline.py`` (MFCC mean/std per clip + logistic regression);
  ``musicnn-logreg``: the same on the clip mean of musicnn's max-pool features (an offline
  linear probe, not a streaming model);
* ``learned``: the shipped ``gtzan`` recipe (patch embedder trained with the model), and the
  same without augmentation, with SpecAugment masks only, and with gain/EQ only, to show what
  each adds;
* ``melstats``: the shipped ``gtzan-melstats`` recipe (fixed per-band statistics per patch),
  with and without mixup;
* ``musicnn``: the shipped ``gtzan-musicnn`` recipe (pretrained MSD musicnn, penultimate layer),
  and the same on its pooled features (1506-d); ``vggish``: the shipped ``gtzan-vggish`` recipe.
  Both need ``coaudio models fetch NAME`` first.

Clips are 10 s (37 tokens), so the window is capped at the clip. With 2-6 test recordings
per style one split's accuracy moves by several points, so ``--seeds`` repeats every row on
other grouped splits (seed 0 is the build's ``splits.csv``; seed s writes ``RUNS/splits-s.csv``
with build.py's own splitter) and reports mean and standard deviation. Results go to
``RUNS/results.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NO_AUGMENT = [
    "train.augment.time_masks=0",
    "train.augment.freq_masks=0",
    "train.augment.gain_db=0",
    "train.augment.eq_db=0",
    "train.augment.mixup=0",
]
PROBES = ("mfcc-logreg", "musicnn-logreg")  # baseline.py rows: clip features + logistic regression
# name -> (recipe, overrides)
CONFIGS = {
    "learned": ("gtzan", []),
    "learned-no-augment": ("gtzan", NO_AUGMENT),
    "learned-masks-only": ("gtzan", ["train.augment.gain_db=0", "train.augment.eq_db=0"]),
    "learned-level-only": ("gtzan", ["train.augment.time_masks=0", "train.augment.freq_masks=0"]),
    "melstats": ("gtzan-melstats", []),
    "melstats-no-mixup": ("gtzan-melstats", ["train.augment.mixup=0"]),
    "musicnn": ("gtzan-musicnn", []),
    "musicnn-penultimate": ("gtzan-musicnn", ["data.frontend.layer=penultimate", "model.token_dim=200"]),
    "musicnn-no-token-norm": ("gtzan-musicnn", ["model.token_norm=false"]),
    "musicnn-hop-0.5s": ("gtzan-musicnn", ["data.frontend.hop_frames=31", "model.encoder.window=60"]),
    "musicnn-wide": (
        "gtzan-musicnn",
        [
            "model.encoder.layer.d_model=128",
            "model.encoder.layer.d_ff=256",
            "model.encoder.layer.dropout=0.2",
        ],
    ),
    "vggish": ("gtzan-vggish", []),
}


def _model_needed(row: str) -> str:
    """The model store's model a row's recipe needs ("" for none)."""
    recipe = "gtzan-musicnn" if row == "musicnn-logreg" else CONFIGS.get(row, ("",))[0]
    return {"gtzan-musicnn": "musicnn", "gtzan-vggish": "vggish"}.get(recipe, "")


def _fetched(model: str) -> bool:
    from coaudio.pretrained.store import model_status

    return model_status(model).state == "present"


def _coaudio(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "coaudio", *args]
    print("$ coaudio " + " ".join(args), file=sys.stderr, flush=True)
    return subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)


def split_file(data: Path, runs: Path, seed: int) -> Path:
    """The grouped split of ``seed``: the build's own for 0, else a new one by build.py's rule."""
    if seed == 0:
        return data / "splits.csv"
    sys.path.insert(0, str(HERE))
    from build import assign_splits  # the splitter the set was built with

    with open(data / "manifest.csv", newline="") as f:
        clips = list(csv.DictReader(f))
    styles: dict[str, list[str]] = {}
    for clip in clips:
        styles.setdefault(clip["label"], [])
        if clip["recording"] not in styles[clip["label"]]:
            styles[clip["label"]].append(clip["recording"])
    split = assign_splits(styles, seed)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "split"])
    writer.writerows([clip["path"], split[clip["recording"]]] for clip in clips)
    path = runs / f"splits-{seed}.csv"
    path.write_text(text.getvalue())
    return path


def baseline(data: Path, splits: Path, features: str = "mfcc", cache: Path | None = None) -> dict:
    """A logistic-regression row (MFCC statistics, or musicnn clip means), from baseline.py's JSON."""
    extra = ["--features", features] + (["--cache", str(cache)] if cache else [])
    done = subprocess.run(
        [sys.executable, str(HERE / "baseline.py"), str(data), "--splits", str(splits), "--json", *extra],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    return {"valid_accuracy": result["valid_accuracy"], "test_accuracy": result["test_accuracy"]}


def model_row(data: Path, splits: Path, run: Path, cache: Path, recipe: str, overrides: list[str]) -> dict:
    """Train (or reuse) the run in ``run`` and evaluate it on the test recordings."""
    started = time.perf_counter()
    if not (run / "eval" / "metrics-test.json").is_file():
        sets = [arg for o in overrides for arg in ("--set", o)]
        resume = ["--resume"] if (run / "config.json").is_file() else []
        _coaudio("train", "folder", str(data), "--splits", str(splits), "--out", str(run),
                 "--recipe", recipe, "--cache", str(cache), *sets, *resume)  # fmt: skip
        _coaudio("evaluate", str(run), "--split", "valid", "--cache", str(cache))
        _coaudio("evaluate", str(run), "--cache", str(cache))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    test = json.loads((run / "eval" / "metrics-test.json").read_text())
    valid = json.loads((run / "eval" / "metrics-valid.json").read_text())
    return {
        "valid_accuracy": valid["accuracy"],
        "test_accuracy": test["accuracy"],
        "test_clips": test["clips"],
        "epochs_run": len(metrics),
        "best_epoch": test.get("checkpoint_epoch"),
        "seconds_this_call": time.perf_counter() - started,
    }


def summarise(name: str, per_seed: list[dict]) -> dict:
    """One row: every seed's numbers, and their mean and (sample) standard deviation."""
    row = {"name": name, "seeds": per_seed}
    for key in ("valid_accuracy", "test_accuracy"):
        values = [r[key] for r in per_seed]
        row[key] = statistics.fmean(values)
        row[key.replace("accuracy", "sd")] = statistics.stdev(values) if len(values) > 1 else 0.0
    epochs = [r["epochs_run"] for r in per_seed if "epochs_run" in r]
    if epochs:
        row["epochs_run"] = "/".join(map(str, epochs))
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| model | valid accuracy | test accuracy | epochs run |", "|---|---:|---:|---:|"]
    for r in rows:
        cells = [
            f"{r[k]:.3f} ± {r[k.replace('accuracy', 'sd')]:.3f}" for k in ("valid_accuracy", "test_accuracy")
        ]
        lines.append(f"| {r['name']} | {cells[0]} | {cells[1]} | {r.get('epochs_run', '-')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the check set built by build.py")
    parser.add_argument("--runs", type=Path, required=True, help="folder for the runs and results.json")
    parser.add_argument("--only", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--seeds", default="0", help="comma-separated split seeds (default: 0)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    wanted = [n for n in args.only.split(",") if n] or [*PROBES, *CONFIGS]
    unknown = [n for n in wanted if n not in PROBES and n not in CONFIGS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(PROBES)}, {', '.join(CONFIGS)}")
    missing = {n: m for n in wanted if (m := _model_needed(n)) and not _fetched(m)}
    if missing and args.only:
        parser.error(f"row {next(iter(missing))} needs 'coaudio models fetch {next(iter(missing.values()))}'")
    for name, model in missing.items():  # the default list: leave the row out, say why
        print(f"leaving out {name}: run 'coaudio models fetch {model}' to include it", file=sys.stderr)
    wanted = [n for n in wanted if n not in missing]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.runs.mkdir(parents=True, exist_ok=True)
    splits = {seed: split_file(args.data, args.runs, seed) for seed in seeds}
    rows = []
    for name in wanted:
        per_seed = []
        for seed in seeds:
            folder = args.runs / (name if seed == 0 else f"seed{seed}") / (name if seed else "")
            if name == "mfcc-logreg":
                per_seed.append({"seed": seed, **baseline(args.data, splits[seed])})
            elif name == "musicnn-logreg":
                found = baseline(args.data, splits[seed], "musicnn", args.runs / ".cache")
                per_seed.append({"seed": seed, **found})
            else:
                found = model_row(args.data, splits[seed], folder, args.runs / ".cache", *CONFIGS[name])
                per_seed.append({"seed": seed, **found})
        rows.append(summarise(name, per_seed))
    results = args.runs / "results.json"  # rows of earlier calls are kept, this call's replaced
    earlier = json.loads(results.read_text()) if results.is_file() else []
    merged = [r for r in earlier if r["name"] not in wanted] + rows
    results.write_text(json.dumps(merged, indent=1) + "\n")
    print(markdown(merged) if args.markdown else json.dumps(merged, indent=1))


if __name__ == "__main__":
    main()
