"""A node's lease in Redis: while it lives, the node owns its rooms; when it is gone, others take them.

The lease is a key holding the node's link address with a TTL (`lease_ms`),
renewed every `renew_interval`. Each lease has its own owner name (the node
name plus a random part), so a node that lost its lease and takes a new
one is a new owner, and its old rooms are taken over like a dead node's.

`serving` says whether the node may answer for its rooms now:
- while the last renewal that Redis acknowledged is younger than the
  lease (less a margin for clock rates), yes;
- while Redis cannot be reached at all, yes, as long as this node keeps
  trying (nobody can take rooms over without Redis, so the members that
  are known keep their heartbeats; writes fail anyway);
- otherwise no: a process that was stopped past its lease (SIGSTOP, a
  long pause) wakes up not serving, and asks Redis before answering.
When Redis answers that the lease is gone, `on_lost` runs (the node hands
its rooms back) and a new lease is taken.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable

import trio
from loguru import logger

from roomd.cluster.redis_rooms import RedisUnavailable, RoomsInRedis

MARGIN = 0.9  # of the lease: renewals are trusted this long, for clocks that run at slightly other rates
RETRY_DOWN = 0.1  # seconds between attempts while Redis is unreachable


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class NodeLease:
    def __init__(
        self,
        rooms: RoomsInRedis,
        *,
        name: str,
        address: str,
        lease_ms: int,
        renew_interval: float,
        on_lost: Callable[[str], None],
    ) -> None:
        self._rooms = rooms
        self.name = name
        self.address = address
        self.lease_ms = lease_ms
        self.renew_interval = renew_interval
        self._on_lost = on_lost
        self.owner = ""  # the current lease's owner name; "" before the first one
        self._renewed_at = -float("inf")  # trio time a renewal acknowledged by Redis was started
        self._last_attempt_failed_at = -float("inf")  # trio time Redis last failed to answer
        self.redis_down = False
        self.renew_failures = 0  # renewals that Redis did not answer or refused
        self.leases_taken = 0
        self.started = trio.Event()
        self.resigned = False
        self.log = logger.bind(actor="root/cluster/lease")

    @property
    def serving(self) -> bool:
        if not self.owner:
            return False
        now = trio.current_time()
        if now < self._renewed_at + self.lease_ms / 1000 * MARGIN:
            return True
        tolerance = 2 * self.renew_interval + self._rooms.timeout
        return self.redis_down and now - self._last_attempt_failed_at < tolerance

    @property
    def held(self) -> bool:
        """Whether Redis acknowledged this lease recently (unlike `serving`, false while Redis is down)."""
        return bool(self.owner) and trio.current_time() < self._renewed_at + self.lease_ms / 1000 * MARGIN

    async def run(self, *, task_status: trio.TaskStatus[NodeLease] = trio.TASK_STATUS_IGNORED) -> None:
        """Take a lease (waiting for Redis as long as it takes), then keep renewing it."""
        await self._take()
        task_status.started(self)
        while True:
            await trio.sleep(RETRY_DOWN if self.redis_down else self.renew_interval)
            if self.resigned:
                return
            started = trio.current_time()
            try:
                renewed = await self._rooms.renew(self.owner, self.address, self.lease_ms)
            except RedisUnavailable as error:
                self.renew_failures += 1
                self._last_attempt_failed_at = trio.current_time()
                if not self.redis_down:
                    self.log.warning("lease not renewed owner={}: Redis unavailable ({})", self.owner, error)
                self.redis_down = True
                continue
            if self.redis_down:
                self.log.info("Redis answers again owner={}", self.owner)
                self.redis_down = False
            if renewed:
                self._renewed_at = started
                continue
            if self.resigned:
                return
            self.renew_failures += 1
            lost = self.owner
            self.log.warning("lease lost owner={}: its rooms go to other nodes; taking a new lease", lost)
            self.owner = ""
            self._on_lost(lost)
            await self._take()

    async def _take(self) -> None:
        while True:
            owner = f"{self.name}-{secrets.token_hex(4)}"
            started = trio.current_time()
            try:
                if await self._rooms.register(owner, self.address, self.lease_ms):
                    self.owner = owner
                    self._renewed_at = started
                    self.redis_down = False
                    self.leases_taken += 1
                    self.started.set()
                    self.log.info("lease taken owner={} link={} lease={}ms", owner, self.address, self.lease_ms)
                    return
            except RedisUnavailable as error:
                self._last_attempt_failed_at = trio.current_time()
                if not self.redis_down:
                    self.log.warning("no lease yet: Redis unavailable ({}); trying again", error)
                self.redis_down = True
            await trio.sleep(RETRY_DOWN)

    async def resign(self) -> None:
        """Give the lease up at once (a draining node), so that others take its rooms now."""
        owner, self.owner = self.owner, ""
        self.resigned = True
        if not owner:
            return
        try:
            await self._rooms.resign(owner)
            self.log.info("lease given up owner={}: other nodes take its rooms", owner)
        except RedisUnavailable as error:
            self.log.warning("lease not given up owner={} ({}): it expires by itself", owner, error)
