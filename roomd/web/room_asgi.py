"""The room routes served straight from ASGI, in front of the Quart app.

Every RTCRoom client request is a `POST <prefix>/<kind>/<endpoint>`, and
heartbeats are most of them. They skip Quart's per-request machinery
(contexts, signals, hooks, response objects): this module reads the body
under the size limit, hands it to `rooms.answer`, writes the encoded reply,
and logs and counts the request. Everything else goes to Quart.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from loguru import logger

from roomd.web import rooms
from roomd.web.body_deadline import BodyTimedOut, timeout_reply
from roomd.web.context import AppContext
from roomd.web.envelope import CONTENT_TYPE, Code, Reply, RequestError, draining_reply, error_reply, reply
from roomd.web.request_log import record_request

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", CONTENT_TYPE.encode())]
log = logger.bind(actor="http")


class _BodyTooLarge(Exception):
    pass


def with_room_routes(ctx: AppContext, fallback: ASGIApp) -> ASGIApp:
    """An ASGI app answering `<prefix>/<kind>/<endpoint>` itself and the rest with `fallback`."""
    prefix = ctx.settings.server.route_prefix + "/"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(prefix):
                kind, slash, endpoint = path[len(prefix) :].partition("/")
                if slash and endpoint and "/" not in endpoint and kind != "utils":
                    await serve_room_request(ctx, scope, receive, send, kind, endpoint)
                    return
        await fallback(scope, receive, send)

    return app


async def serve_room_request(
    ctx: AppContext, scope: Scope, receive: Receive, send: Send, kind: str, endpoint: str
) -> None:
    started = time.perf_counter()
    method: str = scope["method"]
    body = b""
    too_large = late = False
    try:
        if not rooms.is_room_route(ctx, kind, endpoint):
            answer = reply(Code.BAD_PARAMETER, detail=f"no route for {method} {scope['path']}", http_status=404)
        elif method != "POST":
            answer = reply(Code.BAD_PARAMETER, detail=f"{scope['path']} does not accept {method}", http_status=405)
        elif ctx.draining:
            answer = draining_reply()
        else:
            body = await _read_body(scope, receive, ctx.settings.server.max_body_bytes)
            answer = await rooms.answer(
                ctx,
                kind,
                endpoint,
                body=body,
                mimetype=_mimetype(scope),
                query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
                client=client_address(scope),
            )
    except RequestError as error:
        answer = error_reply(error)
    except BodyTimedOut as error:
        late = True
        answer = timeout_reply(error)
    except _BodyTooLarge:
        too_large = True
        limit = ctx.settings.server.max_body_bytes
        answer = reply(Code.BAD_PARAMETER, detail=f"request body is larger than {limit} bytes", http_status=413)
    except Exception:
        log.exception("unexpected error on {} {}", method, scope["path"])
        answer = reply(Code.INTERNAL, detail="unexpected server error; it has been logged")
    await send_reply(send, answer)
    record_request(
        ctx,
        route=f"{kind}/{endpoint}" if rooms.is_room_route(ctx, kind, endpoint) else "unmatched",
        method=method,
        target=request_target(scope),
        client=client_address(scope),
        body="<over the limit>" if too_large else "<too slow>" if late else body.decode("utf-8", errors="replace"),
        status=answer.http_status,
        code=int(answer.code),
        seconds=time.perf_counter() - started,
    )


def client_address(scope: Scope) -> str:
    """The TCP peer's address, or "-" when the server does not say."""
    return scope["client"][0] if scope.get("client") else "-"


def request_target(scope: Scope) -> str:
    """The path and query as the client sent them, for the response log."""
    query = scope["query_string"].decode("latin-1")
    return scope["path"] + (f"?{query}" if query else "")


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _mimetype(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


async def send_reply(send: Send, answer: Reply) -> None:
    payload = answer.encode()
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    if answer.close_connection:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
