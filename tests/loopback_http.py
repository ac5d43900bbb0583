"""A small real HTTP/1.1 server on 127.0.0.1 for fake upstream services (IM, WeChat).

The handler gets each request and returns a reply, or None to close the
connection without answering; it may also take as long as it likes.
`stop_listening` drops every connection and refuses new ones until
`start_listening` binds the same port again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import trio


@dataclass(frozen=True)
class FakeRequest:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else {}
        except ValueError:
            return {}


@dataclass(frozen=True)
class FakeReply:
    status: int
    body: dict[str, Any]
    text: bytes | None = None  # sent as is (text/html) in place of the JSON body


Handler = Callable[[FakeRequest], Awaitable[FakeReply | None]]


@dataclass
class LoopbackServer:
    handler: Handler
    nursery: trio.Nursery
    port: int = 0
    _serving: trio.CancelScope | None = None
    _connections: set[trio.CancelScope] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_listening(self) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        scope = self._serving = trio.CancelScope()

        async def serve() -> None:
            try:
                with scope:
                    await trio.serve_listeners(self._handle, listeners, handler_nursery=self.nursery)
            finally:
                for listener in listeners:
                    await listener.aclose()

        self.nursery.start_soon(serve)
        await trio.lowlevel.checkpoint()

    def stop_listening(self) -> None:
        assert self._serving is not None
        self._serving.cancel()
        for connection in self._connections:
            connection.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        scope = trio.CancelScope()
        self._connections.add(scope)
        try:
            with scope:
                async with stream:
                    await self._converse(stream)
        finally:
            self._connections.discard(scope)

    async def _converse(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        while True:
            request = await _read_request(connection, stream)
            if request is None:
                return
            reply = await self.handler(request)
            if reply is None:
                return
            if reply.text is not None:
                data, content_type = reply.text, "text/html"
            else:
                data, content_type = json.dumps(reply.body).encode(), "application/json"
            headers = [("content-type", content_type), ("content-length", str(len(data)))]
            out = connection.send(h11.Response(status_code=reply.status, headers=headers))
            out += connection.send(h11.Data(data=data)) + connection.send(h11.EndOfMessage())
            try:
                await stream.send_all(out)
                connection.start_next_cycle()
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                return


async def _read_request(connection: h11.Connection, stream: trio.SocketStream) -> FakeRequest | None:
    head: h11.Request | None = None
    body = b""
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:  # the client gave up mid-request
            return None
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            connection.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            target = urlsplit(head.target.decode())
            headers = {name.decode().lower(): value.decode("latin-1") for name, value in head.headers}
            return FakeRequest(head.method.decode(), target.path, dict(parse_qsl(target.query)), body, headers)
        else:
            return None


async def serve_loopback(nursery: trio.Nursery, handler: Handler) -> LoopbackServer:
    server = LoopbackServer(handler, nursery)
    await server.start_listening()
    return server
