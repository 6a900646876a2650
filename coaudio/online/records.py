"""The JSON object of one hop: what ``coaudio stream --jsonl`` prints and ``coaudio serve``
sends (both documented in the README), so the two agree field for field."""

from __future__ import annotations

from coaudio.online.engine import Hop


def hop_record(hop: Hop, labels: list[str], top_k: int, with_top: bool | None = None) -> dict:
    """``hop`` as ``{"hop", "start_s", "end_s", "label", "confidence", "warmup", "latency_ms"}``,
    plus ``"top"`` (the ``top_k`` best classes, best first) when ``with_top`` (default: when
    ``top_k > 1``). A warm-up hop without a prediction has label and confidence ``None``."""
    top = hop.top(top_k)
    record = {
        "hop": hop.index,
        "start_s": round(hop.start_s, 4),
        "end_s": round(hop.end_s, 4),
        "label": labels[top[0][0]] if top else None,
        "confidence": round(top[0][1], 6) if top else None,
        "warmup": hop.warmup,
        "latency_ms": round(hop.latency_ms, 3),
    }
    if with_top is None:
        with_top = top_k > 1
    if with_top:
        record["top"] = top_list(top, labels)
    return record


def top_list(top: list[tuple[int, float]], labels: list[str]) -> list[dict]:
    """``[(class, p), ...]`` -> ``[{"label": ..., "p": ...}, ...]`` (p rounded to 1e-6)."""
    return [{"label": labels[i], "p": round(p, 6)} for i, p in top]
