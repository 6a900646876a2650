"""The JSON API of ``coaudio serve``: ``/api/streams`` (live and past streams) and ``/api/history``
(the stored hops, JSON or CSV)."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

HISTORY_LIMIT = 10_000  # rows of a JSON /api/history answer without ?limit= (the newest)
HISTORY_MAX = 100_000  # rows one JSON answer holds at most (~100 MB to build); CSV streams any number


async def streams(request: Request) -> Response:
    hub, history = request.app.state.hub, request.app.state.history
    live = [dict(s, live=True, ended=None) for s in hub.live()]
    past = []
    if history is not None:  # sessions that ended (a live one is in the history too, still open)
        past = [_past(s) for s in await run_in_threadpool(history.streams) if s.get("ended")]
    return JSONResponse({"streams": live + past})


def _past(session: dict) -> dict:
    """A history session in the shape of a live stream's entry (newest hop as label/time)."""
    entry = {key: session[key] for key in ("name", "kind", "source", "sample_rate", "channels", "started")}
    entry.update(
        session=session["id"],
        hops=session["hops"],
        audio_s=None,  # not kept by the history
        label=session["last_label"],
        confidence=None,
        time=session["last_time"],
        ended=session["ended"],
        live=False,
    )
    return entry


async def history(request: Request) -> Response:
    history = request.app.state.history
    if history is None:
        return _error(404, "this server keeps no history (started with --no-db)")
    from coaudio.serve.history_query import parse_time

    query = request.query_params
    try:
        since = parse_time(query["since"]) if query.get("since") else None
        until = parse_time(query["until"]) if query.get("until") else None
        limit = int(query["limit"]) if query.get("limit") else None
    except ValueError as exc:
        return _error(400, str(exc))
    if limit is not None and limit < 1:
        return _error(400, "limit must be at least 1")
    fmt = query.get("format") or ("csv" if "text/csv" in request.headers.get("accept", "") else "json")
    if fmt not in ("json", "csv"):
        return _error(400, f"format must be json or csv, got {fmt!r}")
    stream = query.get("stream") or None
    if fmt == "csv":
        return StreamingResponse(_csv_rows(history.path, stream, since, until, limit), media_type="text/csv")
    limit = min(limit or HISTORY_LIMIT, HISTORY_MAX)
    rows = await run_in_threadpool(history.query, stream, since, until, limit)
    return JSONResponse({"rows": rows, "count": len(rows), "limit": limit})


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
