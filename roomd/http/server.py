"""Serve an ASGI app the way hypercorn's trio worker does, with roomd's connections and listeners.

`hypercorn.trio.serve` makes its listeners and its per-connection
`TCPServer` itself and takes no others. This runs the same steps — ASGI
lifespan, listening sockets from the config, `trio.serve_listeners`, and on
the shutdown trigger: stop accepting, tell open connections (idle ones close
at once), give requests in flight `config.graceful_timeout` seconds — with
roomd's own pieces: each connection is a `Connection` (write deadline,
HTTP/2 only when asked for), each listener a `PatientListener` (accept
failures for lack of descriptors logged once a second, counted), and
`MemoryReturn` gives memory back after connections were dropped with large
replies unsent.

Cleartext sockets only: roomd configures no TLS.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, Framework, LifespanState
from hypercorn.utils import repr_socket_addr, wrap_app

from roomd.http.accept_errors import AcceptErrorLog, PatientListener
from roomd.http.connection import Connection, ConnectionPolicy
from roomd.http.memory_return import MemoryReturn, follow_up_trims


class CannotListen(Exception):
    """The listening socket could not be made: one line saying where and why."""


def bind_sockets(config: Config) -> Sockets:
    """The listening sockets of `config`, bound (not yet listening): made first, before anything
    else starts, so that a busy port is one line, not a stack after rooms were restored."""
    try:
        sockets = config.create_sockets()
    except OSError as error:
        where = ", ".join(config.bind)
        reason = "address in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error)).lower()
        raise CannotListen(f"cannot listen on {where}: {reason}") from None
    if sockets.secure_sockets or sockets.quic_sockets:
        raise ValueError("roomd serves cleartext HTTP only; TLS belongs to a proxy in front")
    return sockets


async def serve(
    app: Callable[..., Awaitable[None]],
    config: Config,
    policy: ConnectionPolicy,
    accept_errors: AcceptErrorLog,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    sockets: Sockets | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until `shutdown_trigger` returns; `task_status` gets the bound URLs. `sockets`:
    made beforehand by `bind_sockets` (else made here)."""
    asgi = wrap_app(cast(Framework, app), config.wsgi_max_body_size, "asgi")
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(asgi, config, lifespan_state)
    context = WorkerContext(None)
    timers = (config.read_timeout or 0, config.keep_alive_timeout, policy.write_timeout)
    memory = MemoryReturn(follow_ups=follow_up_trims(max(timers)))
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            listeners, binds = _listeners(config, sockets or bind_sockets(config), accept_errors)
            handler = partial(Connection, asgi, config, context, ConnectionState(lifespan_state.copy()), policy, memory)
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(memory.run)
                    accepting.start_soon(partial(trio.serve_listeners, handler, listeners, handler_nursery=connections))
                    task_status.started(binds)
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                await context.terminated.set()
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


def _listeners(
    config: Config, sockets: Sockets, accept_errors: AcceptErrorLog
) -> tuple[list[PatientListener], list[str]]:
    listeners, binds = [], []
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(PatientListener(trio.SocketListener(trio.socket.from_stdlib_socket(sock)), accept_errors))
        binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
    return listeners, binds
