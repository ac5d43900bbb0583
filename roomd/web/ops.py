"""Routes for operators and orchestrators: liveness, readiness, metrics, the actor tree."""

from __future__ import annotations

import json

from quart import Response, request

from roomd.web.context import current_context
from roomd.web.envelope import Code, envelope, ok
from roomd.web.metrics import CONTENT_TYPE
from roomd.web.openapi import build_openapi
from roomd.web.ops_access import require_ops_caller
from roomd.web.validation import parse_count

DEFAULT_ROOMS_SHOWN = 100
MAX_ROOMS_SHOWN = 1_000


async def healthz() -> Response:
    return ok(status="up")


async def readyz() -> Response:
    ctx = current_context()
    if ctx.draining:
        return envelope(Code.BUSY, detail="the server is shutting down", http_status=503)
    if not ctx.ready:
        return envelope(Code.BUSY, detail="the server is starting", http_status=503)
    return ok(status="ready", kinds=sorted(ctx.system.directories))


async def metrics() -> Response:
    ctx = current_context()
    require_ops_caller(ctx)
    return Response(ctx.metrics.render(), status=200, content_type=CONTENT_TYPE)


async def debug_actors() -> Response:
    """The live actor tree; `?limit=N` rooms per kind (default 100, at most 1,000)."""
    require_ops_caller(current_context())
    limit = parse_count(request.args.get("limit", str(DEFAULT_ROOMS_SHOWN)))
    if limit is None:
        return envelope(Code.BAD_PARAMETER, detail="limit must be a non-negative integer")
    limit = min(limit, MAX_ROOMS_SHOWN)
    return ok(tree=current_context().system.describe(limit=limit))


async def openapi() -> Response:
    return Response(
        json.dumps(build_openapi(current_context().settings), ensure_ascii=False),
        status=200,
        content_type="application/json; charset=utf-8",
    )
