"""One node of a cluster: Redis, the lease, the link server, the store and the router, started in order.

    async with open_cluster_node(settings, user_signer=...) as node:
        ctx = AppContext.build(settings, node.router, ...)

Starting: read the cluster's secrets in Redis (a corrupt one stops the
start: SharedSecretCorrupt), connect to Redis, listen for links, take a
lease (waiting for Redis as long as it takes, saying so in the log), start
the store and the room tree, then the relay and the reaper. Leaving the
block: give the lease up first, so the other nodes take this node's rooms
at once, then stop the rooms here (kept in Redis, IM groups untouched),
then the rest; logouts Redis has not taken yet get one more try.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from loguru import logger

from roomd.actors.system import RoomSystem, open_room_system
from roomd.actors.webhooks import WebhookSender
from roomd.auth.tokens import TokenBook
from roomd.cluster.lease import NodeLease, default_node_name
from roomd.cluster.link import LinkServer
from roomd.cluster.peers import Peers
from roomd.cluster.redis_rooms import RoomsInRedis
from roomd.cluster.redis_store import RedisStore
from roomd.cluster.router import ClusterRouter
from roomd.cluster.shared_tokens import SharedRevocations, SharedSecretCorrupt, shared_secret
from roomd.cluster.webhook_lanes import ClusterWebhookLanes
from roomd.config import Settings
from roomd.qcloud.usersig import UserSigner


@dataclass
class ClusterNode:
    router: ClusterRouter
    system: RoomSystem
    link_address: str
    tokens: TokenBook
    revocations: SharedRevocations


@asynccontextmanager
async def open_cluster_node(
    settings: Settings,
    *,
    user_signer: UserSigner | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[ClusterNode]:
    cluster = settings.cluster
    log = logger.bind(actor="root/cluster")
    router: ClusterRouter | None = None

    async def serve_peer(payload: Any) -> Any:
        if router is None:
            return None
        return await router.serve_peer(payload)

    def lease_lost(owner: str) -> None:
        if router is not None:
            router.lease_lost(owner)

    def room_fenced(kind: str, room_id: str) -> None:
        if router is not None:
            router.room_fenced(kind, room_id)

    link_secret, token_secret = await _read_secrets(settings)
    async with (
        RoomsInRedis.connect(cluster.redis_url, call_timeout=cluster.redis_timeout) as rooms,
        trio.open_nursery() as services,
    ):
        link_server = LinkServer(secret=link_secret)
        listeners = await services.start(link_server.serve, serve_peer, cluster.link_host, cluster.link_port)
        port = listeners[0].socket.getsockname()[1]
        address = f"{cluster.advertise_host or cluster.link_host}:{port}"
        lease = NodeLease(
            rooms,
            name=cluster.node_name or default_node_name(),
            address=address,
            lease_ms=cluster.lease_ms,
            renew_interval=cluster.renew_interval,
            on_lost=lease_lost,
        )
        store = RedisStore(rooms, owner=lambda: lease.owner, on_fenced=room_fenced, actor_path="root/store")
        await services.start(store.run)
        log.info("cluster node starting link={}: taking a lease in Redis", address)
        await services.start(lease.run)
        revocations = await services.start(SharedRevocations(rooms, token_ttl=settings.auth.token_ttl).run)
        services.start_soon(revocations.keep_written, wall_clock)
        tokens = TokenBook(token_secret, ttl=settings.auth.token_ttl, revocations=revocations)
        try:
            async with open_room_system(
                settings, user_signer=user_signer, wall_clock=wall_clock, store=store
            ) as system:
                router = ClusterRouter(
                    system.router,
                    rooms=rooms,
                    store=store,
                    lease=lease,
                    peers=Peers(rooms, services, secret=link_secret),
                    call_timeout=settings.server.call_timeout,
                    takeover_batch=cluster.takeover_batch,
                    relay_interval=cluster.relay_interval,
                )
                for directory in system.directories.values():
                    directory.observer = router.relay.observe
                    directory.may_expire = lambda: lease.serving
                await services.start(router.relay.run)
                await services.start(router.run, cluster.reap_interval)
                if settings.webhooks.enabled:
                    sender = WebhookSender(settings.webhooks, store)
                    lanes = ClusterWebhookLanes(rooms, sender, owner=lambda: lease.owner, lease_ms=cluster.lease_ms)
                    store.outbox, store.outbox_cap = lanes.streams_of, lanes.cap
                    router.webhooks = sender
                    await services.start(lanes.run)
                try:
                    yield ClusterNode(
                        router=router, system=system, link_address=address, tokens=tokens, revocations=revocations
                    )
                finally:
                    with trio.CancelScope(shield=True):
                        await lease.resign()
        finally:
            store.stop()
            with trio.move_on_after(cluster.redis_timeout + 1) as waiting:
                waiting.shield = True
                await store.finished.wait()
            services.cancel_scope.cancel()
    log.info("cluster node stopped")


async def _read_secrets(settings: Settings) -> tuple[str, bytes]:
    """The link secret and the token secret, read (or made) in Redis before anything of the node
    starts, on a connection of their own: a corrupt one stops the start as that one error, a
    SharedSecretCorrupt, not inside the exception groups of the node's task groups."""
    cluster = settings.cluster
    try:
        async with RoomsInRedis.connect(cluster.redis_url, call_timeout=cluster.redis_timeout) as rooms:
            link_secret = (await shared_secret(rooms, "link_secret")).decode("ascii")
            token_secret = settings.auth.token_secret.encode() or await shared_secret(rooms, "token_secret")
    except BaseExceptionGroup as group:  # the Redis client's task group holds what the block raised
        corrupt, others = group.split(SharedSecretCorrupt)
        if corrupt is None or others is not None:
            raise
        first: BaseException = corrupt
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return link_secret, token_secret
