"""``coaudio stream CKPT FILE|-|--mic`` and ``coaudio devices``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from coaudio_cli.console import err_console, out_console
from coaudio_cli.errors import fail, interrupted
from coaudio_cli.stream_output import JsonlOutput, LiveOutput, summary_lines

if TYPE_CHECKING:
    import numpy as np


class Warmup(str, Enum):
    predict = "predict"
    wait = "wait"


class StdinFormat(str, Enum):
    auto = "auto"
    s16le = "s16le"
    s32le = "s32le"
    f32le = "f32le"


def stream_cli(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint (.safetensors) or run folder from coaudio train.")
    ],
    source: Annotated[
        Optional[str], typer.Argument(help="Audio file, or '-' for stdin. Omit with --mic.")
    ] = None,
    mic: Annotated[
        bool, typer.Option("--mic", help="Record from an input device (see coaudio devices).")
    ] = False,
    device: Annotated[Optional[str], typer.Option(help="--mic: device index or part of its name.")] = None,
    sr: Annotated[
        Optional[int],
        typer.Option("--sr", min=1, help="Raw stdin: sample rate (default 16000). --mic: rate to record at."),
    ] = None,
    channels: Annotated[
        int, typer.Option(min=1, help="Raw stdin / --mic: channel count (mixed to mono).")
    ] = 1,
    fmt: Annotated[
        StdinFormat,
        typer.Option(
            "--format",
            help="stdin: auto (WAV/AU/FLAC/Ogg/MP3 by their "
            "header), or raw PCM as s16le, s32le or f32le (with --sr and --channels).",
        ),
    ] = StdinFormat.auto,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes per hop in the output.")] = 1,
    jsonl: Annotated[
        bool,
        typer.Option("--jsonl", help="JSON lines on stdout (the default when stdout is not a terminal)."),
    ] = False,
    warmup: Annotated[
        Warmup,
        typer.Option(
            help="predict: from the first hop on the shorter window; wait: only once the window is full."
        ),
    ] = Warmup.predict,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds of audio.")] = None,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="File/stdin: pace the input at real time (demos).")
    ] = False,
    record: Annotated[
        Optional[Path], typer.Option(help="Also write the audio that was classified to this WAV file.")
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, help="torch intra-op threads (one is fastest for single hops).")
    ] = 1,
) -> None:
    """Classify audio hop by hop as it arrives: one line per hop, a summary at the end.

    Ctrl-C stops cleanly with the summary (exit status 0 for --mic, 130 otherwise)."""
    import torch

    from coaudio.audio import AudioError
    from coaudio.online.mic import MicError
    from coaudio.online.model import load_online
    from coaudio.online.session import Session

    err = err_console()
    if mic == (source is not None):
        raise typer.BadParameter("give exactly one source: a FILE, '-' for stdin, or --mic")
    if source not in (None, "-") and (fmt is not StdinFormat.auto or sr is not None or channels != 1):
        raise typer.BadParameter(
            "--format, --sr and --channels describe raw audio on stdin or the "
            "microphone; a file's own header gives its format"
        )
    if duration is not None and duration <= 0:
        raise typer.BadParameter(f"must be more than 0 seconds, got {duration:g}", param_hint="'--duration'")
    torch.set_num_threads(threads)  # per-hop work: one thread unless asked (see coaudio.threads)
    try:
        online = load_online(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)
    microphone = None
    try:
        if mic:
            microphone, name = _open_mic(device, sr, channels), "microphone"
            rate, blocks = microphone.sample_rate, None
        else:
            name = "stdin" if source == "-" else source
            rate, blocks = _open_source(source, fmt.value, sr, channels, online.frontend.hop_s)
    except (AudioError, MicError) as exc:
        fail(exc)
    session = Session(online, rate, full_window_only=warmup is Warmup.wait)
    use_jsonl = jsonl or not sys.stdout.isatty()
    output = (
        JsonlOutput(online.labels, top_k)
        if use_jsonl
        else LiveOutput(online.labels, top_k, online.window, name)
    )
    stopped = False
    try:
        if microphone is not None:
            with microphone:
                _run(
                    session, _mic_blocks(microphone, output), output, duration, realtime=False, record=record
                )
        else:
            _run(session, ((b, 0.0) for b in blocks), output, duration, realtime, record)
    except KeyboardInterrupt:
        stopped = True
    except (AudioError, MicError) as exc:
        fail(exc)
    if session.stats.hops == 0 and not stopped:
        fail(
            f"no prediction: {name} gave {session.stats.audio_s:.2f} s of audio, less than the "
            f"{online.frontend.patch_s:.2f} s the first hop needs"
        )
    extra = _mic_summary(microphone) if microphone is not None else []
    for line in summary_lines(session.stats, online.labels, extra):
        err.print(line, highlight=False, soft_wrap=True)
    if stopped and microphone is None:
        interrupted()  # the summary above says what was heard


def _open_mic(device, sr, channels):
    from coaudio.online.mic import Microphone, parse_device

    return Microphone(parse_device(device), sr, channels)


def _open_source(source: str, fmt: str, sr, channels: int, hop_s: float):
    """(sample rate, blocks of about one hop) of a file or of stdin."""
    from coaudio.audio import stream_audio
    from coaudio.online.sources import open_byte_stream

    if source == "-":
        return open_byte_stream(sys.stdin.buffer, fmt, sr or 16_000, channels, block_seconds=hop_s)
    info, blocks = stream_audio(source, block_seconds=hop_s)
    return info.sample_rate, blocks


def _mic_blocks(microphone, output) -> Iterator[tuple[np.ndarray, float]]:
    for block, gap in microphone.blocks():
        if gap > 0:
            output.note(
                f"[yellow]warning[/yellow]: about {gap:.2f} s of audio did not arrive before "
                f"{microphone.detector.received / microphone.sample_rate:.2f} s "
                "(dropped by the audio system, or the device stalled); continuing"
            )
        yield block, gap


def _run(session, blocks, output, duration: float | None, realtime: bool, record: Path | None) -> None:
    """Push blocks until the source ends, ``duration`` is reached or Ctrl-C."""
    limit = None if duration is None else int(round(duration * session.sample_rate))
    pushed, started = 0, time.monotonic()
    writer = _recorder(record, session.sample_rate)
    try:
        with output:
            for block, _ in blocks:
                if limit is not None:
                    block = block[: max(0, limit - pushed)]
                if writer is not None:
                    writer.write(block)
                for hop in session.push(block):
                    output.hop(hop, session.stats)
                pushed += len(block)
                if limit is not None and pushed >= limit:
                    break
                if realtime:
                    time.sleep(max(0.0, pushed / session.sample_rate - (time.monotonic() - started)))
            for hop in session.flush():
                output.hop(hop, session.stats)
    finally:
        if writer is not None:
            writer.close()


def _recorder(path: Path | None, sample_rate: int):
    if path is None:
        return None
    import soundfile

    try:
        return soundfile.SoundFile(
            str(path), "w", samplerate=sample_rate, channels=1, subtype="FLOAT", format="WAV"
        )
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        fail(f"cannot write the recording to {path}: {exc}")


def _mic_summary(microphone) -> list[str]:
    detector, stats = microphone.detector, microphone.stats
    return [
        f"microphone: {detector.received / microphone.sample_rate:.2f} s recorded at "
        f"{microphone.sample_rate} Hz; {len(detector.gaps)} gap(s), about {detector.dropped_s:.2f} s of "
        f"audio missing; {stats.overflows} overflow flag(s); most audio waiting {stats.max_backlog_s:.2f} s"
    ]


def devices_cli(
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of a table.")] = False,
) -> None:
    """List the input devices PortAudio sees (for coaudio stream --mic --device)."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    from coaudio.online.mic import MicError, input_devices

    try:
        found = input_devices()
    except MicError as exc:
        fail(exc)
    if json_out:
        sys.stdout.write(json.dumps([asdict(d) for d in found], indent=1) + "\n")
        return
    if not found:
        err_console().print(
            "no input devices found (is a microphone connected, or PulseAudio/PipeWire running?)",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    table = Table(title="input devices")
    for column in ("index", "name", "host API", "channels", "default rate", "default"):
        table.add_column(column)
    for d in found:
        table.add_row(
            str(d.index),
            d.name,
            d.host_api,
            str(d.channels),
            f"{d.default_rate:.0f}",
            "*" if d.is_default else "",
        )
    out_console().print(table)
