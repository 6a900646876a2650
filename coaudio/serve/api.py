"""The JSON API of ``coaudio serve``: ``/api/streams`` (live and past streams) and ``/api/history``
(the stored hops, JSON or CSV).

``GET /api/streams?stream=NAME&limit=N``: every live stream, then the newest ``N`` ended
sessions from the history (default :data:`STREAMS_LIMIT`, at most :data:`STREAMS_MAX`), newest
first; ``stream`` keeps only that stream's. ``ended_left_out`` says how many older ended
sessions were not listed. A live and an ended entry have the same keys; an ended one's
``audio_s`` and ``confidence`` are those of its newest hop, and ``ended_by`` is ``"crash"`` when
its server died and a later one closed it (else null).

``GET /api/history?stream=&since=&until=&limit=&format=json|csv``: the hops with
``since <= time < until``. JSON holds the newest ``limit`` rows (default :data:`HISTORY_LIMIT`);
a ``limit`` above :data:`HISTORY_MAX` is refused (400) rather than cut short without a word:
CSV streams any number of rows. Bad parameters are a 400 with ``{"error": "..."}`` that says
which and why (``limit`` not a whole number, ``since`` not before ``until``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

STREAMS_LIMIT = 100  # ended sessions an /api/streams answer lists without ?limit= (the newest)
STREAMS_MAX = 1000  # ... and at most
HISTORY_LIMIT = 10_000  # rows of a JSON /api/history answer without ?limit= (the newest)
HISTORY_MAX = 100_000  # rows one JSON answer holds at most (~100 MB to build); CSV streams any number


class BadRequest(ValueError):
    """A query parameter that cannot be used: a 400 that says why."""


STREAMS_PARAMETERS = ("stream", "limit", "token")
HISTORY_PARAMETERS = ("stream", "since", "until", "limit", "format", "token")


def _known(query, allowed: tuple[str, ...]) -> None:
    """A misspelt or unsupported parameter is an error, not silently everything."""
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        names = ", ".join(name for name in allowed if name != "token")
        raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}; this route takes {names}")


async def streams(request: Request) -> Response:
    hub, history = request.app.state.hub, request.app.state.history
    query = request.query_params
    try:
        _known(query, STREAMS_PARAMETERS)
        limit = _limit(query.get("limit"), STREAMS_LIMIT, STREAMS_MAX)
    except BadRequest as exc:
        return _error(400, str(exc))
    name = query.get("stream") or None
    live = [dict(s, live=True, ended=None, ended_by=None) for s in hub.live() if name in (None, s["name"])]
    past, left_out = [], 0
    if history is not None:  # sessions that ended (a live one is in the history too, still open)
        ended, total = await run_in_threadpool(_ended, history, name, limit)
        past, left_out = [_past(s) for s in reversed(ended)], total - len(ended)
    body = {"streams": live + past, "live": len(live), "ended": len(past), "ended_left_out": left_out}
    return JSONResponse(dict(body, limit=limit))


def _ended(history, name: str | None, limit: int) -> tuple[list[dict], int]:
    return history.streams(name, limit=limit, ended=True), history.count_streams(name, ended=True)


def _past(session: dict) -> dict:
    """A history session in the shape of a live stream's entry (its newest hop as label,
    confidence, time and audio_s)."""
    entry = {key: session[key] for key in ("name", "kind", "source", "sample_rate", "channels", "started")}
    audio_s = session["last_end_s"]
    entry.update(
        session=session["id"],
        hops=session["hops"],
        audio_s=None if audio_s is None else round(audio_s, 3),
        label=session["last_label"],
        confidence=session["last_confidence"],
        time=session["last_time"],
        ended=session["ended"],
        ended_by=session["ended_by"],
        live=False,
    )
    return entry


async def history(request: Request) -> Response:
    history = request.app.state.history
    if history is None:
        return _error(404, "this server keeps no history (started with --no-db)")
    query = request.query_params
    fmt = query.get("format") or ("csv" if "text/csv" in request.headers.get("accept", "") else "json")
    try:
        since, until, limit = _history_params(query, fmt)
    except BadRequest as exc:
        return _error(400, str(exc))
    stream = query.get("stream") or None
    if fmt == "csv":
        return StreamingResponse(_csv_rows(history.path, stream, since, until, limit), media_type="text/csv")
    rows = await run_in_threadpool(history.query, stream, since, until, limit)
    return JSONResponse({"rows": rows, "count": len(rows), "limit": limit})


def _history_params(query, fmt: str) -> tuple[float | None, float | None, int | None]:
    """``since``, ``until`` and ``limit`` of an /api/history request; BadRequest says what is wrong."""
    _known(query, HISTORY_PARAMETERS)
    if fmt not in ("json", "csv"):
        raise BadRequest(f"format must be json or csv, got {fmt!r}")
    since, until = _time(query, "since"), _time(query, "until")
    if since is not None and until is not None and since >= until:
        raise BadRequest(f"since ({query['since']!r}) must be before until ({query['until']!r})")
    if fmt == "csv":
        return since, until, _limit(query.get("limit"), None, None)
    why = " in JSON (format=csv has no maximum)"
    return since, until, _limit(query.get("limit"), HISTORY_LIMIT, HISTORY_MAX, why)


def _time(query, name: str) -> float | None:
    from coaudio.serve.history_query import parse_time

    if not query.get(name):
        return None
    try:
        return parse_time(query[name])
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from None


def _limit(text: str | None, default: int | None, most: int | None, why: str = "") -> int | None:
    """``?limit=`` as a whole number from 1 to ``most``; ``default`` when absent."""
    if not text:
        return default
    try:
        limit = int(text)
    except ValueError:
        raise BadRequest(f"limit must be a whole number, got {text!r}") from None
    if limit < 1:
        raise BadRequest(f"limit must be at least 1, got {limit}")
    if most is not None and limit > most:
        raise BadRequest(f"limit must be at most {most}{why}, got {limit}")
    return limit


def _csv_rows(path, stream, since, until, limit) -> Iterator[str]:
    """CSV lines read one row at a time from a read-only connection of the response's own (any
    number of rows in constant memory; Starlette runs the iterator in its thread pool)."""
    from coaudio.serve.history_query import HistoryReader, csv_header, csv_lines

    reader = HistoryReader(path)
    try:
        yield csv_header()
        yield from csv_lines(reader.iter_query(stream, since, until, limit))
    finally:
        reader.close()


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
