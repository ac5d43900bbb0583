"""Login tokens across a cluster: one secret for every node, logouts seen by every node.

A token issued by one node must pass on every other, so the token secret
(when `auth.token_secret` is not set) is one random secret kept in Redis,
made by the first node that asks; so is the secret of the node link. Both
are checked as they are read back, with the rule of a secret file: a
corrupt value (empty, cut short, set by hand) stops the start rather than
becoming a key. A logout is appended to a Redis stream
and answered once Redis acknowledged it; every node reads the stream's
new entries every `POLL_INTERVAL` and keeps the live revocations in
memory, so a token check costs no Redis call. Residual window (README): a
revoked token used on another node within one poll of the logout passes
there once more. Entries older than the longest token life are trimmed
as new ones are added.

A logout Redis did not take (it was down) holds on its own node at once,
and is answered as not durable; its client cannot log out again, since the
token is refused there. So the node keeps it pending and adds it to the
stream every `RETRY_INTERVAL` until Redis takes it, and once more when the
node stops: only then do the other nodes, and nodes started later, refuse
it. Pending logouts are at most the tokens logged out meanwhile, and one
whose token has expired is dropped.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

import trio
from loguru import logger

from roomd.auth.revocations import RetryWake, RevocationNotDurable, keep_retrying
from roomd.auth.secret_file import SecretFileError, made_secret, new_secret
from roomd.cluster.redis_rooms import RedisUnavailable, RoomsInRedis
from roomd.cluster.scripts import PREFIX

POLL_INTERVAL = 0.1  # seconds between reads of the revocations other nodes made
READ_BATCH = 1000
RETRY_INTERVAL = 1.0  # seconds between tries of the logouts Redis did not take


class SharedSecretCorrupt(SecretFileError):
    """A secret read back from Redis is not one a node made; the message names the key and what to do.

    A SecretFileError, so that the command line reports it as it reports a corrupt secret file."""


async def shared_secret(rooms: RoomsInRedis, name: str) -> bytes:
    """The cluster's secret `name` (token_secret, link_secret); waits for Redis, since a node can
    neither check tokens nor talk to its peers without it. SharedSecretCorrupt if what Redis holds
    under the key is not a secret a node made (64 hex characters)."""
    while True:
        try:
            raw = await rooms.shared_secret(name, new_secret())
            break
        except RedisUnavailable as error:
            logger.bind(actor="root/cluster").warning("{} not read yet: Redis unavailable ({}); retrying", name, error)
            await trio.sleep(1)
    secret = made_secret(raw)
    if secret is None:
        raise SharedSecretCorrupt(
            f"the cluster's {name} in Redis key {PREFIX}{name} is corrupt ({len(raw)} bytes); "
            "delete the key and start the nodes again: the first to start makes a new one"
        )
    return secret


class SharedRevocations:
    def __init__(self, rooms: RoomsInRedis, *, token_ttl: int) -> None:
        self._rooms = rooms
        self._token_ttl = token_ttl
        self._live: dict[str, int] = {}  # token id -> expires
        self._expiry: list[tuple[int, str]] = []
        self._last = ""  # the last stream entry read
        self._pending: dict[str, int] = {}  # token id -> expires: logouts Redis has not taken yet
        self._retries = RetryWake()  # wakes keep_written while there are some
        self.has_legacy_ids = False  # ids from before strict token parsing were never written to Redis
        self.log = logger.bind(actor="auth")

    def __contains__(self, token_id: str) -> bool:
        return token_id in self._live

    @property
    def pending(self) -> int:
        """Logouts held on this node only, waiting for Redis to take them."""
        return len(self._pending)

    async def add(self, token_id: str, expires: int, *, now: int) -> None:
        """Revoke `token_id` here at once; return once Redis took it. RevocationNotDurable if Redis did
        not: it is then pending, and `keep_written` adds it later."""
        self._remember(token_id, expires, now)
        try:
            await self._revoke(token_id, expires, now)
        except RedisUnavailable as error:
            self._pending[token_id] = expires
            self._retries.waiting(True)
            self.log.error(
                "logout not saved in Redis ({}); trying again every {:g} s until Redis takes it", error, RETRY_INTERVAL
            )
            raise RevocationNotDurable(f"the logout could not be saved in Redis ({error})") from None

    async def keep_written(self, clock: Callable[[], float]) -> None:
        """Run until cancelled: add the pending logouts to Redis every RETRY_INTERVAL seconds until it
        takes them all; cancelled (the node stopping), try once more (each call bounded by the Redis
        call timeout). `clock`: wall-clock seconds."""
        await keep_retrying(self._retries, lambda: self.write_pending(now=int(clock())), interval=RETRY_INTERVAL)

    async def write_pending(self, *, now: int) -> bool:
        """Try once to add the pending logouts to Redis, dropping those of expired tokens; True when
        none is left pending."""
        written = 0
        for token_id, expires in list(self._pending.items()):
            if expires >= now:
                try:
                    await self._revoke(token_id, expires, now)
                except RedisUnavailable as error:
                    self.log.debug("{} logout(s) still not saved in Redis: {}", len(self._pending), error)
                    break
                written += 1
            self._pending.pop(token_id, None)
        if written:
            self.log.info("saved {} logout(s) in Redis that it could not take before", written)
        self._retries.waiting(bool(self._pending))
        return not self._pending

    async def _revoke(self, token_id: str, expires: int, now: int) -> None:
        await self._rooms.revoke(token_id, expires, keep_after_ms=(now - self._token_ttl) * 1000)

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
