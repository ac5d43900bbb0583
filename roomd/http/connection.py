"""One client connection: hypercorn's TCPServer with a write deadline and roomd's protocol choice.

hypercorn 0.18 writes each piece of a reply with `send_all`, shielded from
cancellation and without a deadline. A client that never reads its replies
therefore keeps its connection, its request task and the reply it is being
sent for ever, and a client that is gone still has every request it had
pipelined served, one failed write after another. Here a write that does
not finish within `server.write_timeout` seconds, or fails because the
client is gone, ends the connection at once: its tasks are cancelled, the
requests it queued are dropped and the socket is reset (not closed
gracefully: that would leave the kernel holding the unsent reply).

Only cleartext TCP is served (roomd configures no TLS); with `server.h2c`
off the protocol is `HTTP11Only`, with it on hypercorn's switcher between
HTTP/1.1 (`RoomdH11`) and HTTP/2.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass, field

import trio
from hypercorn.config import Config
from hypercorn.events import Event, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import parse_socket_addr
from loguru import logger

from roomd.http.connection_limit import ConnectionsPerAddress
from roomd.http.memory_return import MemoryReturn
from roomd.http.protocol import HTTP11Only, RoomdH11

log = logger.bind(actor="http")
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST and drops what is unsent


@dataclass(frozen=True)
class ConnectionPolicy:
    write_timeout: float
    h2c: bool
    per_address: ConnectionsPerAddress = field(default_factory=lambda: ConnectionsPerAddress(0))


class Connection(TCPServer):
    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        policy: ConnectionPolicy,
        memory: MemoryReturn,
        stream: trio.SocketStream,
    ) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]  # hypercorn annotates an SSLStream yet serves plain TCP too
        self._socket_stream = stream  # self.stream, as it is: hypercorn types that one SSLStream
        self.policy = policy
        self.memory = memory
        self._lifetime = trio.CancelScope()
        self._client_done = False  # the client closed its side: no further request can come

    async def run(self) -> None:
        admitted: str | None = None
        try:
            with self._lifetime:
                socket = self._socket_stream.socket
                client = parse_socket_addr(socket.family, socket.getpeername())
                server = parse_socket_addr(socket.family, socket.getsockname())
                address = client[0] if client else "-"
                if not self.policy.per_address.admit(address):
                    self._abort()
                    return
                admitted = address
                async with TaskGroup() as task_group:
                    self._task_group = task_group
                    self.protocol = self._protocol(task_group, client, server)  # type: ignore[assignment]  # HTTP11Only: not a ProtocolWrapper, but has the initiate and handle used
                    await self.protocol.initiate()
                    await self.idle_task.restart(task_group, self._idle_timeout)
                    await self._read_data()
        except OSError:
            pass
        finally:
            if admitted is not None:
                self.policy.per_address.release(admitted)
            with trio.CancelScope(shield=True):
                await self._close()
            self._cut_cycles()

    def _cut_cycles(self) -> None:
        """A closed connection is freed by reference counting, not left to the cycle collector:
        under a burst of reconnects its garbage made the collector's passes long enough to
        delay every request. The protocol holds this connection (its protocol_send), the task
        group and the idle task hold tasks that do."""
        for name in ("protocol", "_task_group", "idle_task"):
            self.__dict__.pop(name, None)

    def _protocol(
        self, task_group: TaskGroup, client: tuple[str, int] | None, server: tuple[str, int] | None
    ) -> ProtocolWrapper | HTTP11Only:
        args = (self.app, self.config, self.context, task_group, ConnectionState(self.state), False, client, server)
        if not self.policy.h2c:
            return HTTP11Only(*args, self.protocol_send)
        switcher = ProtocolWrapper(*args, self.protocol_send, "http/1.1")
        switcher.protocol = RoomdH11(
            *args, self.protocol_send
        )  # it switches to HTTP/2 from whatever h11 protocol it has
        return switcher

    async def _close(self) -> None:
        # Shielded: the task that closes may be one being cancelled (a request task is cancelled
        # when its connection goes), and the socket must close all the same.
        # Never during a write: that would fail, busy; a write waits write_timeout at most.
        with trio.CancelScope(shield=True):
            async with self.send_lock:
                await super()._close()

    async def _read_data(self) -> None:
        await super()._read_data()
        # The client has closed (or the read ended): waiting keep_alive_timeout for a next request
        # would keep the socket, and its count in max_connections_per_address, for nothing; a
        # request in flight still gets its reply.
        self._client_done = True
        await self.idle_task.stop()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated) and event.idle and self._client_done:
            return  # no next request to wait for
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        written = False
        async with self.send_lock:
            # shielded as in hypercorn (a reply is not cut by its request's cancellation),
            # but with a deadline of its own: one scope does both
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.policy.write_timeout):
                try:
                    await self.stream.send_all(event.data)
                    written = True
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        if not written:
            log.debug(
                "dropping a connection whose client is gone or has not read for {:g} s", self.policy.write_timeout
            )
            self._abort()
            self.memory.reply_dropped(len(event.data))
            self._lifetime.cancel()

    def _abort(self) -> None:
        # A graceful close would queue a FIN behind the unsent reply, which a client that does not
        # read never takes: the kernel would keep the socket and its full buffers for minutes.
        with contextlib.suppress(OSError):  # already closed
            self._socket_stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
