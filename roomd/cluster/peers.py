"""Links to the other nodes, one per peer owner, opened on first use and again after they break.

A peer is found by its owner name: its lease in Redis holds its link
address, so a dead peer (no lease) is never dialled. Calls to a peer that
cannot be reached are answered `Refused(BUSY)` like any link failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio
from loguru import logger

from roomd.actors.replies import DomainError, Refused
from roomd.cluster.link import LinkClient
from roomd.cluster.redis_rooms import RedisUnavailable, RoomsInRedis

CONNECT_TIMEOUT = 1.0  # seconds to open a link


@dataclass(frozen=True)
class Unreachable(Refused):
    """Refused(BUSY) for a call that never reached the peer: the caller may ask another node.
    Stays in this process (not a wire type)."""


class Peers:
    def __init__(self, rooms: RoomsInRedis, nursery: trio.Nursery, *, secret: str | None = None) -> None:
        self._rooms = rooms
        self._secret = secret
        self._nursery = nursery
        self._links: dict[str, LinkClient] = {}
        self._opening: dict[str, trio.Event] = {}
        self.calls = 0
        self.round_trip_total = 0.0  # seconds, for the mean link round trip in /metrics
        self.connect_failures = 0
        self.log = logger.bind(actor="root/cluster/peers")

    @property
    def connected(self) -> list[str]:
        return sorted(owner for owner, link in self._links.items() if link.closed_because is None)

    async def call(self, owner: str, payload: object, *, deadline: float) -> Any:
        """The reply of `owner` to `payload`, or Refused(BUSY) when it cannot be had by `deadline`."""
        link = await self._link(owner, deadline)
        if isinstance(link, Refused):
            return Unreachable(link.error, link.detail)
        if link.closed_because is not None:
            return Unreachable(DomainError.BUSY, f"the link to node {owner} is down ({link.closed_because})")
        started = trio.current_time()
        reply = await link.call(payload, deadline=deadline)
        self.calls += 1
        self.round_trip_total += trio.current_time() - started
        return reply

    def forget(self, owner: str) -> None:
        """Close the link to `owner` (its lease is gone: it is not dialled under that name again)."""
        link = self._links.pop(owner, None)
        if link is not None:
            link.close(f"node {owner} holds no lease any more")

    async def _link(self, owner: str, deadline: float) -> LinkClient | Refused:
        while True:
            link = self._links.get(owner)
            if link is not None and link.closed_because is None:
                return link
            opening = self._opening.get(owner)
            if opening is None:
                break
            with trio.move_on_at(deadline):
                await opening.wait()
            if trio.current_time() >= deadline:
                return Refused(DomainError.BUSY, f"node {owner} could not be reached in time")
        opening = self._opening[owner] = trio.Event()
        try:
            try:
                address = await self._rooms.address_of(owner)
            except RedisUnavailable as error:
                return Refused(DomainError.BUSY, f"the cluster's Redis is unavailable ({error})")
            if address is None:
                return Refused(DomainError.BUSY, f"node {owner} is gone; its rooms are being taken over, retry")
            host, _, port = address.rpartition(":")
            with trio.move_on_at(min(deadline, trio.current_time() + CONNECT_TIMEOUT)):
                opened: LinkClient = await self._nursery.start(self._hold, owner, host, int(port))
                self._links[owner] = opened
                return opened
            self.connect_failures += 1
            return Refused(DomainError.BUSY, f"node {owner} at {address} could not be reached")
        except OSError as error:
            self.connect_failures += 1
            self.log.warning("no link to node {}: {}", owner, error)
            return Refused(DomainError.BUSY, f"node {owner} could not be reached")
        finally:
            del self._opening[owner]
            opening.set()

    async def _hold(self, owner: str, host: str, port: int, *, task_status: trio.TaskStatus[LinkClient]) -> None:
        """Keep the link to `owner` open until it breaks (the link logs why)."""
        link: LinkClient | None = None
        try:
            async with LinkClient.connect(host, port, secret=self._secret) as link:
                self.log.info("link open to node {} at {}:{}", owner, host, port)
                task_status.started(link)
                await link.wait_closed()
        except OSError:
            if link is None:
                raise  # not connected: the caller hears it
            self.log.exception("link to node {} failed", owner)
        finally:
            if link is not None and self._links.get(owner) is link:
                del self._links[owner]
