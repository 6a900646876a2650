"""``coaudio bench load|startup|train``: how the commands behave on a real (busy) machine."""

from __future__ import annotations

from typing import Optional

from rich.table import Table

from coaudio_cli.bench_common import cpu_name, emit_json, machine
from coaudio_cli.console import err_console, out_console


def load_cli(json_out: Optional[str], quick: bool) -> None:
    """Per-hop latency quiet vs beside a multi-threaded torch training job."""
    from coaudio.bench import load

    err = err_console()
    with err.status("per-hop latency, quiet and beside a multi-threaded torch job"):
        record = load.run(rounds=1 if quick else 3)
    if emit_json({"machine": machine(), "load": record}, json_out, err):
        return
    table = Table(
        title=f"per-hop latency, quiet vs beside a {record['load_threads']}-thread torch training job "
        f"({record['usable_cores']} usable cores, {cpu_name()}; target: loaded <= 3x quiet)"
    )
    for column in [
        "path",
        "quiet median ms",
        "quiet p95 ms",
        "loaded median ms",
        "loaded p95 ms",
        "loaded / quiet",
    ]:
        table.add_column(column, justify="right")
    for r in record["rows"]:
        table.add_row(
            r["path"],
            f"{r['quiet']['median_ms']:.2f}",
            f"{r['quiet']['p95_ms']:.2f}",
            f"{r['loaded']['median_ms']:.2f}",
            f"{r['loaded']['p95_ms']:.2f}",
            f"{r['ratio']:.2f}x",
        )
    out_console().print(table)
    verdict = "within" if load.rows_within(record) else "NOT within"
    err.print(f"pinned paths {verdict} 3x of their quiet latency (the last row is the unpinned contrast)")


def startup_cli(json_out: Optional[str], quick: bool) -> None:
    """Wall time of commands that need no model: help, version, a typo."""
    from coaudio.bench import startup

    err = err_console()
    with err.status("timing command start-up"):
        record = startup.run(repeats=3 if quick else 7)
    if emit_json({"machine": machine(), "startup": record}, json_out, err):
        return
    table = Table(
        title=f"command start-up, median of {record['repeats']} runs ({record['program']}; "
        f"python alone {record['python_s']:.2f} s, import torch {record['import_torch_s']:.2f} s)"
    )
    for column in ["command", "seconds"]:
        table.add_column(column, justify="right")
    for r in record["rows"]:
        table.add_row(r["command"], f"{r['seconds']:.3f}")
    out_console().print(table)


def train_cli(json_out: Optional[str], quick: bool, threads: int) -> None:
    """Training throughput before and after shared batches, and with frozen tokens."""
    from coaudio.bench import training

    err = err_console()
    with err.status("timing training epochs on a GTZAN-sized set" + (" (quick: 24 clips)" if quick else "")):
        record = training.run(quick=quick, threads=threads)
    if emit_json({"machine": machine(), "train": record}, json_out, err):
        return
    shape = record["shape"]
    table = Table(
        title=f"training on {shape['train']} + {shape['valid']} clips of {shape['tokens']} tokens, "
        f"{record['windows_per_epoch']} windows per epoch, {record['threads']} thread(s), {cpu_name()}"
    )
    for column in ["recipe, path", "windows/s", "epoch s", "epochs", "full run, min", "vs before"]:
        table.add_column(column, justify="right")
    first = record["rows"][0]["epoch_s"]
    for r in record["rows"]:
        path = r["path"] + (f" (+{r['caching_s']:.1f} s once)" if "caching_s" in r else "")
        table.add_row(
            path,
            f"{r['windows_per_s']:.0f}",
            f"{r['epoch_s']:.1f}",
            str(r["epochs"]),
            f"{r['run_min']:.1f}",
            f"{first / r['epoch_s']:.1f}x",
        )
    out_console().print(table)
