"""``/health`` and ``/metrics`` of ``coaudio serve``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def health(request: Request) -> Response:
    hub, history = request.app.state.hub, request.app.state.history
    metrics, online = hub.metrics, hub.online
    body = {
        "status": "ok",
        "uptime_s": round(time.time() - metrics.started, 3),
        "streams": len(hub.ids()),
        "model": {
            "source": online.source,
            "labels": online.labels,
            "frontend": online.frontend.kind,
        },
        **{k: round(v, 3) for k, v in metrics.recent().items()},
        "results_dropped": metrics.dropped_total,
    }
    if history is not None:
        body["history"] = history.stats()
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    return Response(
        request.app.state.hub.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
