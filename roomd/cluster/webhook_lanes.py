"""Webhooks in cluster mode: the outbox in Redis, each lane delivered by one node at a time.

The node that owns a room writes the room's events into Redis streams (one
per receiver and lane: `outbox:<receiver>:<lane>`) in the same fenced
script as the change they tell of. Every lane has a lease in Redis; the
node holding it delivers the lane's events oldest first, one at a time,
and deletes each once its receiver took it (or it was dropped after
`retry_for`). A node that dies lets its leases run out and another node
goes on from the oldest event left, so an event delivered but not yet
deleted is delivered again: at least once, in order per room. Redis keeps
at most `max_outbox / lanes` events per stream (it trims the oldest).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio
from loguru import logger

from roomd.actors.events import OutboxRow
from roomd.actors.webhooks import WebhookSender, lane_of
from roomd.cluster.redis_rooms import RedisUnavailable, RoomsInRedis
from roomd.cluster.scripts import PREFIX

LANE_LEASE_LEASES = 3  # a lane's delivering node holds it this many node leases without renewing
IDLE_POLL = 0.5  # seconds between looks at an empty lane
BUSY_POLL = 0.02  # ... at a lane that had events last time
BATCH = 50  # events read at once


def outbox_stream(receiver: int, lane: int) -> str:
    return f"{PREFIX}outbox:{receiver}:{lane}"


class ClusterWebhookLanes:
    def __init__(self, rooms: RoomsInRedis, sender: WebhookSender, *, owner: Callable[[], str], lease_ms: int) -> None:
        self._rooms = rooms
        self._lane_lease_ms = lease_ms * LANE_LEASE_LEASES
        self._sender = sender
        self._owner = owner
        self.log = logger.bind(actor="root/webhooks")

    def streams_of(self, room_id: str) -> list[str]:
        """The streams (one per receiver) a room's events go to."""
        settings = self._sender.settings
        lane = lane_of(room_id, settings.lanes)
        return [outbox_stream(receiver, lane) for receiver in range(len(settings.urls))]

    @property
    def cap(self) -> int:
        return max(1, self._sender.settings.max_outbox // self._sender.settings.lanes)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        settings = self._sender.settings
        async with self._sender.client() as http, trio.open_nursery() as nursery:
            for receiver in range(len(settings.urls)):
                for lane in range(settings.lanes):
                    nursery.start_soon(self._lane, http, receiver, lane)
            task_status.started()

    async def _lane(self, http: httpx.AsyncClient, receiver: int, lane: int) -> None:
        stream = outbox_stream(receiver, lane)
        lease = f"{PREFIX}outbox_lease:{receiver}:{lane}"
        while True:
            busy = False
            try:
                owner = self._owner()
                if owner and await self._rooms.hold_lane(lease, owner, self._lane_lease_ms):
                    busy = await self._deliver_some(http, receiver, stream, lease, owner)
            except RedisUnavailable:
                pass  # tried again shortly; nothing is lost, the events stay in Redis
            await trio.sleep(BUSY_POLL if busy else IDLE_POLL)

    async def _deliver_some(self, http: httpx.AsyncClient, receiver: int, stream: str, lease: str, owner: str) -> bool:
        """Deliver the oldest events of the lane, one after another, keeping its lease all along;
        stop (False) as soon as the lease is lost: another node goes on from there."""
        entries = await self._rooms.outbox_head(stream, BATCH)
        if not entries:
            return False
        lost = False
        async with trio.open_nursery() as delivering:

            async def keep_lane() -> None:
                nonlocal lost
                while True:
                    await trio.sleep(self._lane_lease_ms / 3000)
                    try:
                        held = await self._rooms.hold_lane(lease, owner, self._lane_lease_ms)
                    except RedisUnavailable:
                        continue
                    if not held:
                        self.log.warning("webhook lane {} went to another node during a delivery", lease)
                        lost = True
                        delivering.cancel_scope.cancel()
                        return

            delivering.start_soon(keep_lane)
            for entry_id, body, made in entries:
                await self._sender.deliver(http, OutboxRow(0, receiver, "", "", body, made))
                await self._rooms.outbox_done(stream, entry_id)
            delivering.cancel_scope.cancel()
        return not lost
