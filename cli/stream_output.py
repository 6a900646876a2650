"""How ``coaudio stream`` shows hops: JSON lines for programs, a live view for people."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from coaudio_cli.console import err_console, out_console

if TYPE_CHECKING:  # importing it loads torch; the CLI must start without it
    from coaudio.online.session import Hop, StreamStats

BAR_WIDTH = 24


class JsonlOutput:
    """One JSON object per hop on stdout, flushed at once (pipes see every hop live)."""

    def __init__(self, labels: list[str], top_k: int) -> None:
        self.labels, self.top_k = labels, top_k

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def hop(self, hop: Hop, stats: StreamStats) -> None:
        from coaudio.online.records import hop_record

        sys.stdout.write(json.dumps(hop_record(hop, self.labels, self.top_k)) + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """``text`` is console markup: outside text in it goes through rich.markup.escape."""
        err_console().print(text, highlight=False, markup=True)


class LiveOutput:
    """A terminal: a line per hop scrolling above a panel with the current top-k bars."""

    def __init__(self, labels: list[str], top_k: int, window: int, source: str) -> None:
        self.labels, self.top_k, self.window, self.source = labels, max(top_k, 3), window, source
        self.console = out_console()
        self._live = Live(console=self.console, refresh_per_second=8, transient=True)

    def __enter__(self):
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)

    def hop(self, hop: Hop, stats: StreamStats) -> None:
        self.console.print(self._line(hop), highlight=False)
        self._live.update(self._panel(hop, stats))

    def note(self, text: str) -> None:
        """``text`` is console markup: outside text in it goes through rich.markup.escape."""
        self.console.print(text, highlight=False, markup=True)

    def _line(self, hop: Hop) -> Text:
        line = Text(f"{hop.end_s:9.2f} s  ")
        top = hop.top(1)
        if top:
            line.append(f"{self.labels[top[0][0]]:<14}", style="bold cyan")
            line.append(f"{top[0][1]:6.1%}")
        else:
            line.append("(warming up)", style="dim")
        if hop.warmup:
            line.append(f"   warm-up {hop.index + 1}/{self.window}", style="dim")
        return line

    def _panel(self, hop: Hop, stats: StreamStats) -> Panel:
        table = Table.grid(padding=(0, 1))
        for index, p in hop.top(self.top_k):
            filled = round(p * BAR_WIDTH)
            table.add_row(
                self.labels[index], Text("█" * filled + "·" * (BAR_WIDTH - filled), style="cyan"), f"{p:6.1%}"
            )
        footer = Text(
            f"hop {hop.index + 1}  ·  {hop.end_s:.1f} s  ·  latency {hop.latency_ms:.2f} ms  ·  "
            f"real-time factor {stats.real_time_factor:.4f}",
            style="dim",
        )
        return Panel(Group(table, footer), title=Text(self.source), expand=False)


def summary_lines(stats: StreamStats, labels: list[str], extra: list[str]) -> list[str]:
    """The closing summary (stderr): latency, real-time factor, the stream's overall label."""
    latency = stats.latency_summary()
    lines = [
        f"{stats.hops} hop{'s' if stats.hops != 1 else ''} over {stats.audio_s:.2f} s of audio; "
        "per-hop latency mean "
        f"{latency['mean_ms']:.2f} ms, p95 {latency['p95_ms']:.2f} ms, max {latency['max_ms']:.2f} ms; "
        f"processing {stats.processing_s:.3f} s = real-time factor {stats.real_time_factor:.4f}"
    ]
    mean = stats.mean_probs()
    if mean is not None:
        p, i = mean.max(dim=0)
        lines.append(
            f"whole stream (mean probability over {stats.predicted_hops} "
            f"hop{'s' if stats.predicted_hops != 1 else ''}): "
            f"{labels[int(i)]} {float(p):.1%}"
        )
    return lines + extra
