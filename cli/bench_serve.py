"""``coaudio bench serve``: the tables (the measuring is :mod:`coaudio.bench.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from coaudio_cli.bench_common import Json, cpu_name, emit_json, machine
from coaudio_cli.console import err_console, out_console

ENGINES = ("continual", "regular", "regular-cached")


def bench_serve_cli(
    engines: Annotated[
        str, typer.Option(help="Engines to search, comma-separated: continual, regular, regular-cached.")
    ] = "continual,regular",
    window: Annotated[int, typer.Option(min=1, help="Window n of the GTZAN recipe's model.")] = 120,
    blocks: Annotated[int, typer.Option(min=1, help="Encoder blocks of that model.")] = 1,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            exists=True, dir_okay=False, help="Serve this checkpoint instead (--window/--blocks unused)."
        ),
    ] = None,
    max_streams: Annotated[
        int, typer.Option(min=1, help="Largest N tried (the server's limits are set to it).")
    ] = 1024,
    start: Annotated[int, typer.Option(min=1, help="First N tried; doubled until a trial fails.")] = 8,
    budget_s: Annotated[
        float, typer.Option(min=1.0, help="Total time for every search, in seconds.")
    ] = 2400.0,
    precision: Annotated[
        float, typer.Option(min=0.0, help="Bisect until failing and passing N are this close (relative).")
    ] = 0.1,
    trial_s: Annotated[
        float, typer.Option(min=0.5, help="Measured seconds per trial, every stream live.")
    ] = 15.0,
    warmup_s: Annotated[
        Optional[float],
        typer.Option(min=0.0, help="Seconds before measuring (default: until every window is full, + 1 s)."),
    ] = None,
    ramp_s: Annotated[
        float, typer.Option(min=0.0, help="Streams start spread over this many seconds.")
    ] = 2.0,
    chunk_s: Annotated[
        float, typer.Option(min=0.01, max=5.0, help="Audio per WebSocket message, seconds.")
    ] = 0.25,
    max_p95_ms: Annotated[
        float, typer.Option(min=1.0, help="A stream's p95 hop latency must stay within this.")
    ] = 250.0,
    max_drift_ms: Annotated[
        float, typer.Option(min=0.0, help="Real time: a stream's lag may grow by at most this over a trial.")
    ] = 100.0,
    no_pin: Annotated[
        bool, typer.Option("--no-pin", help="Do not pin the server and the clients to different cores.")
    ] = False,
    no_deflate: Annotated[
        bool, typer.Option("--no-deflate", help="Clients do not offer permessage-deflate (browsers do).")
    ] = False,
    json_out: Json = None,
) -> None:
    """How many real-time streams one coaudio serve carries: a real server, N paced WebSocket
    clients in their own process, a search for the largest N at which every stream is OK."""
    names = list(dict.fromkeys(e.strip() for e in engines.split(",") if e.strip()))
    unknown = [e for e in names if e not in ENGINES]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown engine {unknown[0] if unknown else engines!r}; known: {', '.join(ENGINES)}"
        )
    if start > max_streams:
        raise typer.BadParameter(f"--start {start} exceeds --max-streams {max_streams}")
    serve_bench(
        names,
        json_out,
        checkpoint,
        window=window,
        blocks=blocks,
        cap=max_streams,
        start=start,
        budget_s=budget_s,
        precision=precision,
        pin=not no_pin,
        chunk_s=chunk_s,
        ramp_s=ramp_s,
        warmup_s=warmup_s,
        trial_s=trial_s,
        max_p95_ms=max_p95_ms,
        max_drift_ms=max_drift_ms,
        compression=not no_deflate,
    )


def serve_bench(
    engines: list[str],
    json_out: Optional[str],
    checkpoint: Optional[Path],
    **options,
) -> None:
    """Run the search for every engine, then print or write the result."""
    from coaudio.bench import serve

    settings = serve.TrialSettings(
        **{
            k: options.pop(k)
            for k in ("chunk_s", "ramp_s", "warmup_s", "trial_s", "max_p95_ms", "max_drift_ms", "compression")
        }
    )
    err = err_console()
    with err.status("coaudio bench serve: starting") as status:

        def progress(message: str) -> None:
            status.update(f"coaudio bench serve: {message}")
            if " streams " in message:  # a trial's verdict: kept in the log
                err.print(message, highlight=False)

        document = serve.run(
            tuple(engines), settings=settings, checkpoint=checkpoint, progress=progress, **options
        )
    document["machine"] = machine()
    if emit_json(document, json_out, err):
        return
    out = out_console()
    out.print(summary_table(document))
    out.print(trials_table(document))
    for line in notes(document):
        out.print(line, highlight=False)


def summary_table(document: dict) -> Table:
    model, settings = document["model"], document["settings"]
    table = Table(
        title=f"real-time streams one coaudio serve carries (n={model['window']}, "
        f"{model['blocks']} block(s), {settings['chunk_s']:g} s chunks; OK: every stream's p95 <= "
        f"{settings['max_p95_ms']:g} ms and real time) ({cpu_name()})"
    )
    columns = ["engine", "max streams", "p50 ms", "p95 ms", "max ms", "server p95 ms", "hops/s"]
    columns += ["server CPU cores (loop + worker), per hop", "trials", "search"]
    for column in columns:
        table.add_column(column, justify="right")
    for engine, result in document["engines"].items():
        best = result["at_max"] or {}
        table.add_row(
            engine,
            str(result["max_streams"]),
            _ms(best.get("p50_ms")),
            _ms(best.get("p95_ms")),
            _ms(best.get("max_ms")),
            _ms(best.get("server_p95_ms")),
            f"{best['hops_per_s']:.0f}" if best else "-",
            _cpu(best),
            str(len(result["trials"])),
            _search(result),
        )
    return table


def trials_table(document: dict) -> Table:
    table = Table(title="every trial, in order")
    columns = ["engine", "streams", "OK", "p50 ms", "p95 ms", "max ms", "hops/s", "server CPU"]
    columns += ["client CPU", "machine busy", "client late p95 ms", "s", "why not"]
    for column in columns:
        table.add_column(column, justify="right")
    for engine, result in document["engines"].items():
        for t in result["trials"]:
            table.add_row(
                engine,
                str(t["streams"]),
                "yes" if t["ok"] else "no",
                _ms(t.get("p50_ms")),
                _ms(t.get("p95_ms")),
                _ms(t.get("max_ms")),
                "-" if t.get("hops_per_s") is None else f"{t['hops_per_s']:.0f}",
                _cpu(t),
                _cores(t.get("client_cores")),
                _cores(t.get("machine_busy_cores")),
                _ms(t.get("client_late_p95_ms")),
                f"{t['duration_s']:.0f}",
                t.get("reason", ""),
            )
    return table


def notes(document: dict) -> list[str]:
    lines = []
    for key, value in document.items():
        if key.startswith("ratio_vs_"):
            lines.append(f"continual / {key.removeprefix('ratio_vs_')}: {value:.1f}x the real-time streams")
    load = document["load_average"]
    probes = ", ".join(f"{k} {v:.2f}" for k, v in document["probe_ms_per_hop"].items())
    lines.append(f"machine speed (engine ms per hop in batches of 16 on the server core): {probes}")
    lines.append(f"pinning: {document['pinning']['why']}")
    lines.append(_priority(document.get("priority") or {}))
    deflate = "offered (as browsers do)" if document["settings"]["compression"] else "not offered"
    lines.append(f"WebSocket compression (permessage-deflate): {deflate}")
    lines.append(
        f"load average (1 min) {load['before'][0]:.2f} before, {load['after'][0]:.2f} after; warm-up "
        f"{document['settings']['warmup_s']:.1f} s, measured {document['settings']['trial_s']:g} s per trial"
    )
    return lines


def _priority(priority: dict) -> str:
    """What the pinned server and load generator asked for and got (nice values)."""
    asked = priority.get("asked")
    if asked is None:
        return "priority: as started (not pinned)"
    got = f"server {priority.get('server')}, clients {priority.get('clients')}"
    if priority.get("server") == priority.get("clients") == asked:
        return f"priority: server and clients at nice {asked}: other processes cannot take their cores"
    return f"priority: nice {asked} asked, got {got} (no privilege?): other processes share the cores"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _cores(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cpu(trial: dict) -> str:
    if "server_cores" not in trial:
        return "-"
    loop, worker = trial["server_loop_cores"], trial["server_worker_cores"]
    cores = f"{trial['server_cores']:.2f} ({loop:.2f} + {worker:.2f})"
    if trial.get("hops_per_s"):  # CPU per hop: what a faster server changes, whatever the load
        cores += f", {1e3 * trial['server_cores'] / trial['hops_per_s']:.2f} ms/hop"
    return cores


def _search(result: dict) -> str:
    if result["first_failing"] is None:
        return result["stopped"]
    return f"fails at {result['first_failing']}; {result['stopped']}"
