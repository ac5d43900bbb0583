"""Routes for operators and orchestrators: liveness and readiness."""

from __future__ import annotations

from quart import Response

from roomd.web.edge import current_edge
from roomd.web.envelope import Code, envelope, ok


async def healthz() -> Response:
    return ok(status="up")


async def readyz() -> Response:
    edge = current_edge()
    if edge.draining:
        return envelope(Code.BUSY, detail="the server is shutting down", http_status=503)
    return ok(status="ready", kinds=sorted(edge.system.directories))
