"""``/health`` and ``/metrics`` of ``coaudio serve``.

``/health`` answers HTTP 200 whenever the server itself works, with ``"status"``:

* ``"ok"``: every pulled source (``--source``) is streaming, or still on its first try at
  connecting (for at most :data:`~coaudio.serve.source_metrics.GRACE_S` seconds);
* ``"degraded"``: some source is not: it dropped and is backing off or reconnecting, has
  connected for too long, or has failed. ``"sources"`` says which and why (``state``,
  ``since``, ``sessions``, ``drops``, ``reconnects``, ``last_error``, ``last_error_at``,
  ``retry_in_s``, ``down_s``: the seconds it has not been streaming).

A failing source does not make the answer 503 on purpose: Docker's HEALTHCHECK and Kubernetes'
probes look at the status code only, and restarting the server (what they do about a failing
probe) does not bring back a radio that is off the air or a microphone that was unplugged; the
server already reconnects by itself, and meanwhile serves its other streams. Alert on
``"status": "degraded"`` or on ``coaudio_source_state{state!="streaming"}`` in ``/metrics``.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from coaudio.serve import source_metrics


async def health(request: Request) -> Response:
    hub, history = request.app.state.hub, request.app.state.history
    metrics, online = hub.metrics, hub.online
    sources_ok, sources = source_metrics.health(hub)
    body = {
        "status": "ok" if sources_ok else "degraded",
        "uptime_s": round(time.time() - metrics.started, 3),
        "streams": len(hub.ids()),
        "model": {
            "source": online.source,
            "labels": online.labels,
            "frontend": online.frontend.kind,
        },
        **{k: round(v, 3) for k, v in metrics.recent().items()},
        "results_dropped": metrics.dropped_total,
        "sources": sources,
    }
    if history is not None:
        body["history"] = history.stats()
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    return Response(
        request.app.state.hub.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
