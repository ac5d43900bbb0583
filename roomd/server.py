"""Run roomd: the actor tree plus hypercorn's HTTP machinery (http_server) until SIGINT or SIGTERM.

Stopping, in order: readyz and every room route answer 503 (code 12) for
`server.drain_grace` seconds, so balancers and clients notice; then the
listener closes and requests already accepted get up to
`server.shutdown_timeout` seconds to finish (hypercorn's graceful timeout);
then every room closes with reason `shutdown` and the IM queue drains for at
most `im.drain_timeout` seconds; then the process exits 0. With persistence
on, "close" means stop: rooms stay in the store for the next start.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from loguru import logger

from roomd.actors.router import RoomRouter
from roomd.actors.system import open_room_system
from roomd.auth.signers import SignerChoice
from roomd.auth.tokens import TokenBook
from roomd.config import Settings
from roomd.http.accept_errors import AcceptErrorLog
from roomd.http.connection import ConnectionPolicy
from roomd.http.connection_limit import ConnectionsPerAddress
from roomd.http.server import bind_sockets
from roomd.http.server import serve as serve_http
from roomd.supervisor import STOP_SIGNALS
from roomd.web.asgi import create_app
from roomd.web.context import AppContext

log = logger.bind(actor="root")
HTTP_LOGGER = "http-server"


async def serve(settings: Settings, signer: SignerChoice) -> None:
    hypercorn_config = _hypercorn_config(settings)
    sockets = bind_sockets(hypercorn_config)  # first: a busy port is CannotListen, before any room is restored
    log.info(
        "roomd starting kinds={} auth={} usersig={}",
        ",".join(settings.kinds),
        settings.auth.mode,
        signer.description,
    )
    if settings.im.configured:
        log.info("IM configured sdkAppID={} base_url={}", settings.im.sdk_app_id, settings.im.base_url)
    else:
        log.info("IM not configured (im.sdk_app_id = 0): IM REST calls are skipped")
    async with httpx.AsyncClient() as http, _open_router(settings, signer) as (router, tokens):
        ctx = AppContext.build(settings, router, signer.signer, http=http, tokens=tokens)
        ctx.ready = False
        stop = trio.Event()

        async def shutdown_trigger() -> None:
            await stop.wait()
            await trio.sleep(settings.server.drain_grace)

        async with trio.open_nursery() as helpers:
            helpers.start_soon(_stop_on_signal, ctx, stop)
            helpers.start_soon(ctx.response_log.run_flusher)
            if tokens is None:  # the book of this process (a cluster node keeps its own written to Redis)
                helpers.start_soon(ctx.tokens.keep_revocations_written, ctx.now)
            async with trio.open_nursery() as web:
                binds = await web.start(
                    partial(
                        serve_http,
                        create_app(ctx),
                        hypercorn_config,
                        ConnectionPolicy(
                            write_timeout=settings.server.write_timeout,
                            h2c=settings.server.h2c,
                            per_address=ConnectionsPerAddress(settings.server.max_connections_per_address),
                        ),
                        AcceptErrorLog(ctx.metrics.accept_errors.inc),
                        shutdown_trigger=shutdown_trigger,
                        sockets=sockets,
                    )
                )
                gc.freeze()  # what start-up made (restored rooms, modules) stays: full collections skip it
                ctx.ready = True
                for bind in binds:
                    log.info("roomd listening on {}", bind)
                await stop.wait()
                log.info(
                    "roomd stopping: answering 503 for {:g} s, then finishing in-flight requests, then closing rooms",
                    settings.server.drain_grace,
                )
            helpers.cancel_scope.cancel()  # hypercorn is done; the flusher and the revocations write what is left
    log.info("roomd stopped")


@asynccontextmanager
async def _open_router(settings: Settings, signer: SignerChoice) -> AsyncIterator[tuple[RoomRouter, TokenBook | None]]:
    """One process: the local router over SQLite (or nothing), tokens of this process;
    cluster.redis_url set: a cluster node, with the cluster's tokens."""
    if settings.cluster.enabled:
        from roomd.cluster.node import open_cluster_node  # one process never loads the Redis client

        async with open_cluster_node(settings, user_signer=signer.signer) as node:
            yield node.router, node.tokens
    else:
        async with open_room_system(settings, user_signer=signer.signer) as system:
            yield system.router, None


async def _stop_on_signal(ctx: AppContext, stop: trio.Event) -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("received {}", signal.Signals(signum).name)
            ctx.draining = True
            stop.set()
            await ctx.router.drain()
            return


def _hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{settings.server.host}:{settings.server.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger(HTTP_LOGGER)  # hypercorn's own lines, under a name that says what they are
    config.include_server_header = False  # replies say nothing about the stack
    config.graceful_timeout = settings.server.shutdown_timeout
    if settings.server.reuse_port:
        config.workers = 2  # what makes hypercorn's sockets SO_REUSEPORT; roomd.http starts no workers itself
    # hostile clients: idle connections, slow senders and huge headers cost them, not others.
    # The keep-alive timer also runs while a request head arrives: a head has that long in all.
    # Whole-body deadline, write timeout, head size and protocol checks: request_checks, body_deadline, http.connection.
    config.keep_alive_timeout = settings.server.keep_alive_timeout
    config.backlog = settings.server.listen_backlog  # hypercorn's 100 overflows under a burst of reconnects
    config.read_timeout = math.ceil(settings.server.read_timeout)
    config.h11_max_incomplete_size = settings.server.max_header_bytes
    return config
