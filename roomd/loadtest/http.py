"""A lean keep-alive HTTP/1.1 client for the load generator.

httpx spends more CPU per request than roomd does answering it, so with
thousands of simulated clients on one machine the generator, not the
server, became the bottleneck. This pool does only what roomd-load needs:
POST a JSON body to one host (http or https) over at most `size` kept-alive
connections, and hand back the status and body. roomd-load keeps one pool
per node URL it was given.
"""

from __future__ import annotations

import json
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11
import trio


class TransportError(Exception):
    """The request got no HTTP answer: refused, reset, timed out, or malformed."""


class _Closed(TransportError):
    """The server closed the connection before answering (a kept-alive one may have gone stale)."""


MAX_IDLE = 3.0  # seconds; hypercorn closes connections idle for 5 s
DEFAULT_PORTS = {"http": 80, "https": 443}

_Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


class _Connection:
    def __init__(self, stream: _Stream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = trio.current_time()

    async def request(self, target: str, body: bytes) -> tuple[int, bytes]:
        headers = [
            ("host", self.host),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ]
        data = self.h11.send(h11.Request(method="POST", target=target, headers=headers))
        data += self.h11.send(h11.Data(data=body)) + self.h11.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        status, chunks = 0, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                received = await self.stream.receive_some(65536)
                if not received:
                    raise _Closed("the server closed the connection")
                self.h11.receive_data(bytes(received))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise _Closed("the server closed the connection")

    def drop(self) -> None:
        """Close at once, without a TLS goodbye: for a connection the server has likely closed already."""
        socket_stream = self.stream.transport_stream if isinstance(self.stream, trio.SSLStream) else self.stream
        socket_stream.socket.close()

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False


class HttpPool:
    def __init__(self, base_url: str, *, size: int, timeout: float) -> None:
        url = urlsplit(base_url)
        if url.scheme not in DEFAULT_PORTS or not url.hostname:
            raise ValueError(f"roomd-load needs an http:// or https:// URL, not {base_url!r}")
        self.host, self.port = url.hostname, url.port or DEFAULT_PORTS[url.scheme]
        self.tls = ssl.create_default_context() if url.scheme == "https" else None
        self.base_path = url.path.rstrip("/")
        self.timeout = timeout
        self._slots = trio.CapacityLimiter(size)
        self._idle: list[_Connection] = []

    async def post_json(
        self, path: str, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> tuple[int, Any, float]:
        """(status, decoded JSON, seconds on the wire); the wait for a free connection is not counted."""
        target = self.base_path + path + (f"?{urlencode(params)}" if params else "")
        payload = json.dumps(body).encode()
        async with self._slots:
            started = trio.current_time()
            status, data = await self._exchange(target, payload)
            elapsed = trio.current_time() - started
        try:
            reply = json.loads(data)
        except (ValueError, RecursionError):
            raise TransportError(f"HTTP {status} with a body that is not JSON") from None
        if not isinstance(reply, dict):
            raise TransportError(f"HTTP {status} with a body that is not a JSON object")
        return status, reply, elapsed

    async def _exchange(self, target: str, payload: bytes) -> tuple[int, bytes]:
        connection = self._reusable_connection()
        if connection is not None:
            try:
                return await self._over(connection, target, payload)
            except _Closed:
                pass  # it had gone stale: once more on a fresh connection
        return await self._over(None, target, payload)

    def _reusable_connection(self) -> _Connection | None:
        now = trio.current_time()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < MAX_IDLE:
                return connection
            connection.drop()
        return None

    async def _over(self, connection: _Connection | None, target: str, payload: bytes) -> tuple[int, bytes]:
        try:
            with trio.fail_after(self.timeout):
                if connection is None:
                    connection = _Connection(await self._connect(), f"{self.host}:{self.port}")
                answer = await connection.request(target, payload)
        except _Closed:
            if connection is not None:
                await connection.stream.aclose()
            raise
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError) as error:
            if connection is not None:
                await connection.stream.aclose()
            raise TransportError(f"{type(error).__name__}: {error}") from None
        if connection.reusable():
            connection.idle_since = trio.current_time()
            self._idle.append(connection)
        else:
            await connection.stream.aclose()
        return answer

    async def _connect(self) -> _Stream:
        if self.tls is None:
            return await trio.open_tcp_stream(self.host, self.port)
        return await trio.open_ssl_over_tcp_stream(self.host, self.port, ssl_context=self.tls, https_compatible=True)

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().stream.aclose()
