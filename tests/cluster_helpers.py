"""Several roomd nodes in one test process, each with its own app, sharing a real Redis on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import trio

from roomd.auth.signers import choose_user_signer
from roomd.cluster.node import ClusterNode, open_cluster_node
from roomd.web.asgi import create_app
from roomd.web.context import AppContext
from tests.conftest import Api, make_settings

FAST_LEASE = {
    "ROOMD_CLUSTER__LEASE_MS": "1000",
    "ROOMD_CLUSTER__RENEW_INTERVAL": "0.2",
    "ROOMD_CLUSTER__REAP_INTERVAL": "0.1",
    "ROOMD_CLUSTER__REDIS_TIMEOUT": "0.5",
}


class NodeApi(Api):
    """A node's HTTP client, and the node."""

    node: ClusterNode


@asynccontextmanager
async def open_node(redis_url: str, *, name: str, **env: str) -> AsyncIterator[NodeApi]:
    settings = make_settings(ROOMD_CLUSTER__REDIS_URL=redis_url, ROOMD_CLUSTER__NODE_NAME=name, **{**FAST_LEASE, **env})
    signer = choose_user_signer(settings.im).signer
    async with httpx.AsyncClient() as http, open_cluster_node(settings, user_signer=signer) as node:
        ctx = AppContext.build(settings, node.router, signer, http=http, wall_clock=time.time, tokens=node.tokens)
        app = create_app(ctx)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://roomd.test") as client:
            api = NodeApi(app, ctx, client, node.system)
            api.node = node
            yield api


@asynccontextmanager
async def open_nodes(redis_url: str, count: int, **env: str) -> AsyncIterator[list[NodeApi]]:
    async with AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(open_node(redis_url, name=f"n{i}", **env)) for i in range(count)]
        yield nodes


@asynccontextmanager
async def node_in_scope(redis_url: str, *, name: str, **env: str) -> AsyncIterator[tuple[NodeApi, trio.CancelScope]]:
    """A node whose scope a test cancels to make it vanish as if killed (no lease given up)."""
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()
        ready: trio.MemorySendChannel[NodeApi]
        ready, arrived = trio.open_memory_channel[NodeApi](1)

        async def run() -> None:
            with scope:
                async with open_node(redis_url, name=name, **env) as api:
                    await ready.send(api)
                    await trio.sleep_forever()

        nursery.start_soon(run)
        api = await arrived.receive()
        yield api, scope
        scope.cancel()
