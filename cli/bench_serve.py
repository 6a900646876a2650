"""``coaudio bench serve``: the tables (the measuring is :mod:`coaudio.bench.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.table import Table

from coaudio_cli.bench import _cpu_name, _emit_json, _machine
from coaudio_cli.console import err_console, out_console

ENGINES = ("continual", "regular", "regular-cached")


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
    document["machine"] = _machine()
    if _emit_json(document, json_out, err):
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
        f"{settings['max_p95_ms']:g} ms and real time) ({_cpu_name()})"
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
