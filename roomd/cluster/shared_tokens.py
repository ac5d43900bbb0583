"""Login tokens across a cluster: one secret for every node, logouts seen by every node.

A token issued by one node must pass on every other, so the token secret
(when `auth.token_secret` is not set) is one random secret kept in Redis,
made by the first node that asks. A logout is appended to a Redis stream
and answered once Redis acknowledged it; every node reads the stream's
new entries every `POLL_INTERVAL` and keeps the live revocations in
memory, so a token check costs no Redis call. Residual window (README): a
revoked token used on another node within one poll of the logout passes
there once more. Entries older than the longest token life are trimmed
as new ones are added.
"""

from __future__ import annotations

import heapq
import secrets
import time

import trio
from loguru import logger

from roomd.auth.revocations import RevocationNotDurable
from roomd.cluster.redis_rooms import RedisUnavailable, RoomsInRedis

POLL_INTERVAL = 0.1  # seconds between reads of the revocations other nodes made
READ_BATCH = 1000


async def shared_secret(rooms: RoomsInRedis, name: str) -> bytes:
    """The cluster's secret `name` (token_secret, link_secret); waits for Redis, since a node can
    neither check tokens nor talk to its peers without it."""
    while True:
        try:
            return await rooms.shared_secret(name, secrets.token_hex(32).encode())
        except RedisUnavailable as error:
            logger.bind(actor="root/cluster").warning("{} not read yet: Redis unavailable ({}); retrying", name, error)
            await trio.sleep(1)


class SharedRevocations:
    def __init__(self, rooms: RoomsInRedis, *, token_ttl: int) -> None:
        self._rooms = rooms
        self._token_ttl = token_ttl
        self._live: dict[str, int] = {}  # token id -> expires
        self._expiry: list[tuple[int, str]] = []
        self._last = ""  # the last stream entry read
        self.has_legacy_ids = False  # ids from before strict token parsing were never written to Redis
        self.log = logger.bind(actor="auth")

    def __contains__(self, token_id: str) -> bool:
        return token_id in self._live

    async def add(self, token_id: str, expires: int, *, now: int) -> None:
        self._remember(token_id, expires, now)
        try:
            await self._rooms.revoke(token_id, expires, keep_after_ms=(now - self._token_ttl) * 1000)
        except RedisUnavailable as error:
            raise RevocationNotDurable(f"the logout could not be saved in Redis ({error})") from None

    def _remember(self, token_id: str, expires: int, now: int) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, gone = heapq.heappop(self._expiry)
            if self._live.get(gone, now) < now:
                del self._live[gone]
        if expires >= now:
            self._live[token_id] = max(expires, self._live.get(token_id, 0))
            heapq.heappush(self._expiry, (expires, token_id))

    async def run(self, *, task_status: trio.TaskStatus[SharedRevocations] = trio.TASK_STATUS_IGNORED) -> None:
        """Read every revocation Redis holds, then keep reading those other nodes add."""
        await self._read_all(waiting_for_redis=True)
        task_status.started(self)
        while True:
            await trio.sleep(POLL_INTERVAL)
            await self._read_all(waiting_for_redis=False)

    async def _read_all(self, *, waiting_for_redis: bool) -> None:
        while True:
            try:
                entries = await self._rooms.revoked_after(self._last, READ_BATCH)
            except RedisUnavailable as error:
                if not waiting_for_redis:
                    return  # tried again at the next poll
                self.log.warning("revocations not read yet: Redis unavailable ({}); retrying", error)
                await trio.sleep(1)
                continue
            now = int(time.time())
            for entry_id, token_id, expires in entries:
                self._last = entry_id
                self._remember(token_id, expires, now)
            if len(entries) < READ_BATCH:
                return
