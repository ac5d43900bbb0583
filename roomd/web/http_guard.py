"""In front of every route: refuse bad request heads, and give every body one deadline.

A refused head (request_checks) is answered here, in the envelope, without
calling the app. Every other request gets a `receive` under a whole-body
deadline (body_deadline). Room routes answer a late body themselves (408,
logged with their route); for what Quart serves — it waits for the body to
log it — the deadline surfaces here as `BodyTimedOut`, and if nothing has
been sent yet this answers the 408.
"""

from __future__ import annotations

import time
from typing import Any

from roomd.web.body_deadline import BodyDeadline, BodyTimedOut, timeout_reply
from roomd.web.context import AppContext
from roomd.web.envelope import Reply
from roomd.web.request_checks import head_refusal
from roomd.web.request_log import record_request
from roomd.web.room_asgi import ASGIApp, Receive, Scope, Send, client_address, request_target, send_reply

MAX_LOGGED_TARGET_CHARS = 2048


def guarded(ctx: AppContext, app: ASGIApp) -> ASGIApp:
    server = ctx.settings.server

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        refusal = head_refusal(scope, server.max_header_bytes)
        if refusal is not None:
            await _answer(ctx, scope, send, refusal, started)
            return
        replying = False

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal replying
            replying = True
            await send(message)

        late: BodyTimedOut | None = None
        try:
            await app(scope, BodyDeadline(receive, server.read_timeout).receive, watched_send)
        except* BodyTimedOut as group:
            late = group.exceptions[0]  # type: ignore[assignment]
        if late is not None and not replying:
            await _answer(ctx, scope, send, timeout_reply(late), started)

    return guard


async def _answer(ctx: AppContext, scope: Scope, send: Send, answer: Reply, started: float) -> None:
    await send_reply(send, answer)
    record_request(
        ctx,
        route="unmatched",
        method=scope["method"],
        target=request_target(scope)[:MAX_LOGGED_TARGET_CHARS],
        client=client_address(scope),
        body="",
        status=answer.http_status,
        code=int(answer.code),
        seconds=time.perf_counter() - started,
    )
