"""``coaudio bench encoder|stream|classify|frontend|train|load|startup|serve``: measured, side by side."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from coaudio_cli.bench_common import Blocks, Json, Quick, Threads, cpu_name, emit_json, machine
from coaudio_cli.bench_serve import bench_serve_cli
from coaudio_cli.console import err_console, out_console

WIDE = 240  # columns into a file or pipe for the widest tables (15 columns of numbers)

app = typer.Typer(
    help="Benchmarks: each prints a table, or with --json writes a JSON document ('-' = stdout).",
    no_args_is_help=True,
)


QUICK = {"models": "gtzan", "blocks": "1,2", "windows": "120", "rounds": 3}


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{name} must be positive integers, got {text!r}")
    return values


@app.command("encoder")
def encoder_cli(
    models: Annotated[
        str, typer.Option(help="Model shapes: gtzan (192/16 heads/ff 192), small (128/4/256).")
    ] = "gtzan,small",
    blocks: Blocks = "1,2",
    windows: Annotated[
        str, typer.Option(help="Window lengths n, comma-separated ('none': only the front-end table).")
    ] = "32,64,120,256",
    threads: Threads = 1,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved timing rounds per configuration.")] = 5,
    quick: Annotated[bool, typer.Option("--quick", help="Only the GTZAN shape at n=120, 3 rounds.")] = False,
    json_out: Json = None,
) -> None:
    """Per-step latency of continual vs regular steps, side by side, and FLOPs per prediction."""
    from coaudio.bench import encoder as encoder_bench  # heavy import only when run

    if quick:
        models, blocks, windows, rounds = QUICK["models"], QUICK["blocks"], QUICK["windows"], QUICK["rounds"]
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in encoder_bench.MODELS]
    if unknown:
        raise typer.BadParameter(f"unknown model {unknown[0]!r}; known: {', '.join(encoder_bench.MODELS)}")
    case_list = encoder_bench.cases(names, _ints(blocks, "--blocks"), _ints(windows, "--windows"))

    err = err_console()
    records = []
    with err.status("benchmarking") as status:
        for i, record in enumerate(encoder_bench.run(case_list, threads=threads, rounds=rounds)):
            records.append(record)
            status.update(f"benchmarked {i + 1}/{len(case_list)}")
    document = {"machine": machine(), "threads": threads, "results": records}
    if emit_json(document, json_out, err):
        return
    out_console(WIDE).print(_table(records, threads))


@app.command("stream")
def stream_cli(
    blocks: Blocks = "1,2",
    windows: Annotated[
        str, typer.Option(help="Window lengths n, comma-separated ('none': only the front-end table).")
    ] = "32,64,120,256",
    threads: Threads = 1,
    quick: Annotated[bool, typer.Option("--quick", help="Only n=120 and 100 measured hops.")] = False,
    frontends: Annotated[
        str,
        typer.Option(
            help="Front ends to time per hop with their shipped recipes (learned, melstats, vggish, "
            "musicnn; comma-separated), 'all' or 'none'."
        ),
    ] = "all",
    json_out: Json = None,
) -> None:
    """Audio block to prediction per hop: continual vs regular vs regular on cached tokens, and
    the cost of a hop with each front end."""
    kinds = _frontend_kinds(frontends)
    if windows.strip() == "none":
        sizes = []
    else:
        sizes = _ints("120" if quick else windows, "--windows")
    _stream(
        _ints(blocks, "--blocks"),
        sizes,
        threads,
        json_out,
        100 if quick else 300,
        kinds,
        20 if quick else 60,
    )


def _frontend_kinds(text: str) -> list[str]:
    known = ["learned", "melstats", "vggish", "musicnn"]
    if text.strip() == "all":
        return known
    if text.strip() == "none":
        return []
    kinds = list(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))  # each once
    unknown = [k for k in kinds if k not in known]
    if unknown or not kinds:
        raise typer.BadParameter(
            f"--frontends: unknown front end {unknown[0] if unknown else text!r} (known: "
            f"{', '.join(known)}, all, none)"
        )
    return kinds


@app.command("classify")
def classify_cli(quick: Quick = False, json_out: Json = None) -> None:
    """Files through the model on 1 and 2 cores vs the regular encoder (x real time)."""
    _classify(json_out, clips=8 if quick else 16)


@app.command("frontend")
def frontend_cli(
    streams: Annotated[
        str, typer.Option(help="Stream counts for the per-hop table, comma-separated.")
    ] = "1,10,100",
    quick: Annotated[bool, typer.Option("--quick", help="2 clips, 1 round, 2 hops per count.")] = False,
    json_out: Json = None,
) -> None:
    """Log-mel throughput vs librosa (VGGish and musicnn recipes, 1 core; VGGish also on 2
    worker processes), and one hop of N streams' front ends, batched vs one by one."""
    _frontend(json_out, _ints(streams, "--streams"), quick)


@app.command("train")
def train_cli(
    quick: Annotated[
        bool, typer.Option("--quick", help="A small set (24 clips) instead of GTZAN's size.")
    ] = False,
    threads: Annotated[int, typer.Option(min=0, help="torch threads (0: what training picks).")] = 0,
    json_out: Json = None,
) -> None:
    """Training speed on a GTZAN-sized set: per-window batches (before), shared batches, frozen tokens."""
    from coaudio_cli.bench_system import train_cli as run

    run(json_out, quick, threads)


@app.command("load")
def load_cli(quick: Quick = False, json_out: Json = None) -> None:
    """Per-hop latency of stream, evaluate and classify, quiet and beside a torch training job."""
    from coaudio_cli.bench_system import load_cli as run

    run(json_out, quick)


@app.command("startup")
def startup_cli(quick: Quick = False, json_out: Json = None) -> None:
    """Wall time of commands that need no model: --help, --version, a typo."""
    from coaudio_cli.bench_system import startup_cli as run

    run(json_out, quick)


app.command("serve")(bench_serve_cli)  # its options and tables are in cli/bench_serve.py


def _table(records: list[dict], threads: int) -> Table:
    table = Table(title=f"per-step latency, {threads} thread(s), batch 1, float32 ({cpu_name()})")
    for column in [
        "model",
        "blocks",
        "n",
        "regular us",
        "reg-last us",
        "continual us",
        "kernel",
        "torch-step us",
        "speedup",
        "vs last",
        "regular MFLOPs",
        "continual MFLOPs",
        "FLOPs ratio",
        "max |diff|",
        "co-inference us",
        "vs co-inference",
    ]:
        table.add_column(column, justify="right")
    for r in records:
        table.add_row(
            r["model"],
            str(r["blocks"]),
            str(r["n"]),
            f"{r['regular_us']:.0f}",
            f"{r['regular_last_us']:.0f}",
            f"{r['continual_us']:.1f}",
            r["kernel"],
            f"{r['continual_torch_us']:.1f}",
            f"{r['speedup']:.1f}x",
            f"{r['speedup_vs_last']:.1f}x",
            f"{r['regular_flops'] / 1e6:.2f}",
            f"{r['continual_flops'] / 1e6:.3f}",
            f"{r['flops_ratio']:.1f}x",
            f"{r['max_abs_diff']:.1e}",
            "-" if r["reference_us"] is None else f"{r['reference_us']:.0f}",
            "-" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.1f}x",
        )
    return table


def _frontend(json_out: Optional[str], streams: list[int], quick: bool) -> None:
    from coaudio.bench import frontend

    err = err_console()
    size = {"n_clips": 2, "rounds": 1, "hops": 2} if quick else {}
    with err.status("benchmarking the log-mel front ends"):
        record = frontend.run(streams=tuple(streams), **size)
    document = {"machine": machine(), "frontend": record}
    if emit_json(document, json_out, err):
        return
    out = out_console()
    out.print(_throughput_table(record))
    out.print(_per_hop_table(record["per_hop"]))


def _throughput_table(record: dict) -> Table:
    table = Table(
        title=f"log-mel throughput, x real time ({record['audio_s']:.0f} s of audio in 30 s clips; "
        "1 core: one torch thread, one BLAS thread for librosa)"
    )
    columns = ["recipe", "coaudio 1 core", "librosa 1 core", "vs librosa", "coaudio 2 cores"]
    for column in [*columns, "8.3 h on 2 cores"]:
        table.add_column(column, justify="right")
    table.add_row(
        "VGGish",
        f"{record['coaudio_1core_xrt']:.0f}x",
        f"{record['librosa_1core_xrt']:.0f}x",
        f"{record['speedup_vs_librosa']:.2f}x",
        f"{record['coaudio_2core_xrt']:.0f}x",
        f"{record['gtzan_8_3h_2core_s']:.0f} s",
    )
    musicnn = record["musicnn"]
    table.add_row(
        "musicnn",
        f"{musicnn['coaudio_1core_xrt']:.0f}x",
        f"{musicnn['librosa_1core_xrt']:.0f}x",
        f"{musicnn['speedup_vs_librosa']:.2f}x",
        "-",
        "-",
    )
    return table


def _per_hop_table(rows: list[dict]) -> Table:
    hop_s = rows[0]["hop_s"] if rows else 0.96
    table = Table(title=f"VGGish front end per hop: N streams of 16 kHz audio, {hop_s:.2f} s each, 1 thread")
    for column in ["streams", "one by one ms", "batched ms", "batched us/stream", "batched vs one by one"]:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["streams"]),
            f"{r['one_by_one_ms']:.2f}",
            f"{r['batched_ms']:.2f}",
            f"{r['batched_us_per_stream']:.0f}",
            f"{r['speedup']:.2f}x",
        )
    return table


def _stream(
    blocks: list[int],
    windows: list[int],
    threads: int,
    json_out: Optional[str],
    measured_hops: int,
    kinds: list[str],
    frontend_hops: int,
) -> None:
    from coaudio.bench import frontends, pipeline

    err = err_console()
    records, per_frontend = [], []
    with err.status("benchmarking the per-hop pipeline") as status:
        for b in blocks:
            for n in windows:
                status.update(f"per-hop pipeline: {b} block(s), n={n}")
                records.append(pipeline.run(window=n, blocks=b, measured_hops=measured_hops, threads=threads))
        for kind in kinds:
            status.update(f"per-hop pipeline: the {kind} front end")
            per_frontend.append(frontends.run(kind, measured_hops=frontend_hops, threads=threads))
    document = {"machine": machine(), "threads": threads, "stream": records, "frontends": per_frontend}
    if emit_json(document, json_out, err):
        return
    if not records:
        out_console(WIDE).print(_frontend_table(per_frontend, threads))
        return
    table = Table(
        title=f"per hop, audio block -> prediction (GTZAN shape, 0.25 s hops, learned embedder), "
        f"{threads} thread(s) ({cpu_name()})"
    )
    for column in [
        "blocks",
        "n",
        "continual us",
        "p95 us",
        "RTF",
        "regular us",
        "speedup",
        "cached-token us",
        "speedup",
        "continual MFLOPs",
        "regular MFLOPs",
        "FLOPs ratio",
        "cached MFLOPs",
        "FLOPs ratio",
        "max |diff|",
    ]:
        table.add_column(column, justify="right")
    for r in records:
        table.add_row(
            str(r["blocks"]),
            str(r["window"]),
            f"{r['continual_us']:.0f}",
            f"{r['continual_p95_us']:.0f}",
            f"{r['continual_rtf']:.4f}",
            f"{r['regular_us']:.0f}",
            f"{r['speedup_vs_regular']:.1f}x",
            f"{r['regular_cached_us']:.0f}",
            f"{r['speedup_vs_regular_cached']:.2f}x",
            f"{r['continual_mflops']:.1f}",
            f"{r['regular_mflops']:.0f}",
            f"{r['flops_ratio_vs_regular']:.0f}x",
            f"{r['regular_cached_mflops']:.1f}",
            f"{r['flops_ratio_vs_regular_cached']:.1f}x",
            f"{r['max_abs_diff']:.1e}",
        )
    out_console(WIDE).print(table)
    if per_frontend:
        out_console(WIDE).print(_frontend_table(per_frontend, threads))


def _frontend_table(records: list[dict], threads: int) -> Table:
    table = Table(
        title=f"per hop with each front end, audio block -> prediction (its shipped recipe), "
        f"{threads} thread(s) ({cpu_name()})"
    )
    columns = ["front end", "recipe", "weights", "hop s", "window", "us per hop", "p95 us", "RTF", "token us"]
    for column in columns:
        table.add_column(column, justify="right")
    for r in records:
        table.add_row(
            r["frontend"],
            r["recipe"],
            r["weights"],
            f"{r['hop_s']:.3f}",
            str(r["window"]),
            f"{r['hop_us']:.0f}",
            f"{r['hop_p95_us']:.0f}",
            f"{r['rtf']:.4f}",
            "in step" if r["token_us"] is None else f"{r['token_us']:.0f}",
        )
    return table


def _classify(json_out: Optional[str], clips: int) -> None:
    from coaudio.bench import throughput

    err = err_console()
    with err.status(f"classifying {clips} 30 s clips on 1 and 2 cores"):
        record = throughput.run(clips=clips)
    document = {"machine": machine(), "classify": record}
    if emit_json(document, json_out, err):
        return
    table = Table(
        title=f"coaudio classify throughput, x real time ({record['audio_s']:.0f} s of 30 s clips; "
        "GTZAN shape n=120, default embedder)"
    )
    for column in ["continual 1 core", "continual 2 cores", "regular 1 core", "continual vs regular"]:
        table.add_column(column, justify="right")
    table.add_row(
        f"{record['continual_1core_xrt']:.0f}x",
        f"{record['continual_2core_xrt']:.0f}x",
        f"{record['regular_1core_xrt']:.0f}x",
        f"{record['speedup_vs_regular_1core']:.2f}x",
    )
    out_console().print(table)
