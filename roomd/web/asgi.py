"""roomd as an ASGI app: each HTTP request becomes a pipeline `Request`, its `Reply` the response.

Nothing here decides anything about a request: the pipeline does. This
translates the ASGI scope (head checks included, request_checks), reads
the body for the pipeline under its size limit and whole-body deadline
(body_deadline), and sends the reply, in parts when it is a stream.
roomd serves no WebSocket: a handshake is answered like a refused head
(400, or 404 for an unknown path), in the envelope, logged and counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from roomd.web import routes
from roomd.web.body_deadline import BodyDeadline
from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply
from roomd.web.pipeline import CLIENT_GONE_STATUS, BodyTooLarge, ClientGone, Request, Routes, respond
from roomd.web.request_checks import head_refusal

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
HTTP_RESPONSE = ("http.response.start", "http.response.body")
WEBSOCKET_RESPONSE = ("websocket.http.response.start", "websocket.http.response.body")  # hypercorn's extension


def create_app(ctx: AppContext) -> ASGIApp:
    """The whole HTTP surface of roomd as one ASGI app."""
    table = routes.build(ctx)
    server = ctx.settings.server

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await _lifespan(receive, send)
            elif kind == "websocket":
                await refuse_websocket(ctx, table, scope, send)
            return
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query_string=scope["query_string"].decode("latin-1"),
            headers=scope["headers"],
            client=scope["client"][0] if scope.get("client") else "-",
            body=AsgiBody(scope, BodyDeadline(receive, server.read_timeout).receive),
            refusal=head_refusal(scope, server.max_header_bytes),
        )
        answer = await respond(ctx, table, request)
        if answer.http_status != CLIENT_GONE_STATUS:
            await send_reply(send, answer, with_body=request.method != "HEAD")

    return app


async def refuse_websocket(ctx: AppContext, table: Routes, scope: Scope, send: Send) -> None:
    path = scope["path"]
    if table.by_path.get(path) or table.absolute_form(path):
        status, detail = 400, f"roomd does not serve WebSocket; {path} is plain HTTP"
    else:
        status, detail = 404, f"roomd does not serve WebSocket, and has no route for {path}"
    request = Request(
        method="GET",
        path=path,
        query_string=scope["query_string"].decode("latin-1"),
        headers=scope["headers"],
        client=scope["client"][0] if scope.get("client") else "-",
        body=NO_BODY,
        refusal=Reply(Code.BAD_PARAMETER, detail=detail, http_status=status, close_connection=True),
    )
    answer = await respond(ctx, table, request)
    if "websocket.http.response" in scope.get("extensions", {}):
        await send_reply(send, answer, messages=WEBSOCKET_RESPONSE)
    else:
        await send({"type": "websocket.close"})  # the server refuses the handshake in its own way


class _NoBody:
    async def read(self, limit: int) -> bytes:
        return b""


NO_BODY = _NoBody()


class AsgiBody:
    """The request body from ASGI `http.request` messages."""

    __slots__ = ("_receive", "_scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._scope = scope
        self._receive = receive

    async def read(self, limit: int) -> bytes:
        for name, value in self._scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def send_reply(
    send: Send, answer: Reply, *, with_body: bool = True, messages: tuple[str, str] = HTTP_RESPONSE
) -> None:
    try:
        await _send_reply(send, answer, with_body=with_body, messages=messages)
    finally:
        if answer.on_done is not None:
            answer.on_done()


async def _send_reply(send: Send, answer: Reply, *, with_body: bool, messages: tuple[str, str]) -> None:
    start, body = messages
    headers = [(b"content-type", answer.content_type.encode())]
    if answer.close_connection:
        headers.append((b"connection", b"close"))
    if answer.headers:
        headers.extend(answer.headers)
    if answer.stream is not None:
        await send({"type": start, "status": answer.http_status, "headers": headers})
        if with_body:
            async for part in answer.stream:
                await send({"type": body, "body": part, "more_body": True})
        await send({"type": body, "body": b""})
        return
    payload = answer.encode()
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": start, "status": answer.http_status, "headers": headers})
    await send({"type": body, "body": payload if with_body else b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
