"""Routes for operators and orchestrators: liveness, readiness, metrics, the actor tree, the API description."""

from __future__ import annotations

import json

import trio

from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, ok_reply, raw_reply, reply
from roomd.web.metrics import CONTENT_TYPE
from roomd.web.openapi import build_openapi
from roomd.web.ops_access import require_ops_caller
from roomd.web.pipeline import Call
from roomd.web.validation import parse_count

DEFAULT_ROOMS_SHOWN = 100
MAX_ROOMS_SHOWN = 1_000


async def healthz(ctx: AppContext, call: Call) -> Reply:
    return ok_reply(status="up")


async def readyz(ctx: AppContext, call: Call) -> Reply:
    if ctx.draining:
        return reply(Code.BUSY, detail="the server is shutting down", http_status=503)
    if not ctx.ready:
        return reply(Code.BUSY, detail="the server is starting", http_status=503)
    why_not = ctx.router.ready
    if why_not is not None:
        return reply(Code.BUSY, detail=why_not, http_status=503)
    return ok_reply(status="ready", kinds=sorted(ctx.router.kinds))


async def metrics(ctx: AppContext, call: Call) -> Reply:
    require_ops_caller(ctx, call)
    return raw_reply(ctx.metrics.render(), CONTENT_TYPE)


async def debug_actors(ctx: AppContext, call: Call) -> Reply:
    """The live actor tree; `?limit=N` rooms per kind (default 100, at most 1,000)."""
    require_ops_caller(ctx, call)
    limit = parse_count(call.query.get("limit", str(DEFAULT_ROOMS_SHOWN)))
    if limit is None:
        return reply(Code.BAD_PARAMETER, detail="limit must be a non-negative integer")
    tree = {
        "path": "root",
        "kind": "root",
        "state": "stopping" if ctx.draining else "running",
        "uptime": round(trio.current_time() - ctx.started_at, 3),
        "children": await ctx.router.describe(limit=min(limit, MAX_ROOMS_SHOWN)),
    }
    return ok_reply(tree=tree)


async def openapi(ctx: AppContext, call: Call) -> Reply:
    document = json.dumps(build_openapi(ctx.settings), ensure_ascii=False).encode()
    return raw_reply(document, "application/json; charset=utf-8")
