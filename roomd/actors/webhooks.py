"""The webhook sender: delivers the events rooms saved, at least once, in order per room.

Rooms save each event with the change it tells of (events.py), one outbox
row per receiver; the store hands the rows on once they are committed, and
at start the sender reads those still waiting. Each receiver has `lanes`
deliveries in flight at once; a room's events always take the same lane,
one after the other, so they arrive in the order they happened. A delivery
is a POST of the event's JSON with `Roomd-Signature: t=<unix>,v1=<hex
HMAC-SHA256(secret, "<t>.<body>")>`; any 2xx is success, anything else (or no
answer within `timeout`) is tried again with a backoff that doubles from 1 s
to `max_backoff`, until `retry_for` after the event, when it is dropped (logged,
counted). A delivered or dropped event's row is deleted in the background.

Nothing here waits on a room or holds one up: a slow or dead receiver only
makes its own outbox grow, up to `max_outbox` events, beyond which the
oldest are dropped (counted; logged once per outage).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import trio
from loguru import logger

from roomd.actors.events import OutboxRow
from roomd.actors.messages import EventDelivered
from roomd.actors.ports import ChangeStore
from roomd.config import WebhookSettings

FIRST_BACKOFF = 1.0
SIGNATURE_HEADER = "Roomd-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Roomd-Signature` header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass
class _Lane:
    rows: collections.deque[OutboxRow] = field(default_factory=collections.deque)
    waiting: trio.Event = field(default_factory=trio.Event)


@dataclass
class WebhookStats:
    delivered: int = 0
    failed_attempts: int = 0
    dropped_late: int = 0  # retried until retry_for, then dropped
    dropped_full: int = 0  # the oldest, when the outbox was full
    latency_total: float = 0.0  # seconds from the event to its delivery, summed
    latencies: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=10_000))


class WebhookSender:
    def __init__(
        self,
        settings: WebhookSettings,
        store: ChangeStore,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._store = store
        self._transport = transport
        self._wall_clock = wall_clock
        self._lanes = [[_Lane() for _ in range(settings.lanes)] for _ in settings.urls]
        self._queued = [0] * len(settings.urls)
        self._full_logged = [False] * len(settings.urls)
        self.stats = WebhookStats()
        self._scope = trio.CancelScope()
        self.log = logger.bind(actor="root/webhooks")

    @property
    def outbox_depth(self) -> int:
        return sum(self._queued)

    def accept(self, rows: list[OutboxRow]) -> None:
        """Rows the store has saved: queued on their receiver's lane for their room."""
        for row in rows:
            if row.receiver >= len(self._lanes):
                continue
            lanes = self._lanes[row.receiver]
            lane = lanes[lane_of(row.room_id, len(lanes))]
            lane.rows.append(row)
            lane.waiting.set()
            self._queued[row.receiver] += 1
            if self._queued[row.receiver] > self.settings.max_outbox:
                self._drop_oldest(row.receiver)

    def _drop_oldest(self, receiver: int) -> None:
        lanes = self._lanes[receiver]
        fullest = max(lanes, key=lambda lane: (len(lane.rows) > 1, -lane.rows[1].row if len(lane.rows) > 1 else 0))
        if len(fullest.rows) < 2:  # the head of each lane is being delivered: keep it
            return
        dropped = fullest.rows[1]  # the oldest waiting behind a delivery in flight
        del fullest.rows[1]
        self._forget(dropped)
        self.stats.dropped_full += 1
        if not self._full_logged[receiver]:
            self._full_logged[receiver] = True
            self.log.warning(
                "webhook outbox full for {} ({} events); dropping the oldest until it drains",
                self.settings.shown_url(receiver),
                self.settings.max_outbox,
            )

    def _forget(self, row: OutboxRow) -> None:
        self._queued[row.receiver] -= 1
        self._store.write_later([EventDelivered(row.kind, row.room_id, row.row)], about="root/webhooks")

    async def run(self, *, task_status: trio.TaskStatus[WebhookSender] = trio.TASK_STATUS_IGNORED) -> None:
        self.log.info("webhook sender started receivers={} lanes={}", len(self._lanes), self.settings.lanes)
        with self._scope:
            async with self.client() as http, trio.open_nursery() as nursery:
                for receiver, lanes in enumerate(self._lanes):
                    for lane in lanes:
                        nursery.start_soon(self._deliver_lane, http, receiver, lane)
                task_status.started(self)
        self.log.info("webhook sender stopped delivered={} waiting={}", self.stats.delivered, self.outbox_depth)

    def stop(self) -> None:
        """Stop delivering; what is not delivered stays in the outbox (SQLite) for the next start."""
        self._scope.cancel()

    async def _deliver_lane(self, http: httpx.AsyncClient, receiver: int, lane: _Lane) -> None:
        while True:
            while not lane.rows:
                await lane.waiting.wait()
                lane.waiting = trio.Event()
            row = lane.rows[0]
            await self.deliver(http, row)
            lane.rows.popleft()
            self._forget(row)
            if self._queued[receiver] <= self.settings.max_outbox // 2:
                self._full_logged[receiver] = False

    def client(self) -> httpx.AsyncClient:
        """The HTTP client deliveries go through (one per sender; a connection per lane)."""
        limits = httpx.Limits(max_connections=self.settings.lanes, max_keepalive_connections=self.settings.lanes)
        return httpx.AsyncClient(transport=self._transport, timeout=self.settings.timeout, limits=limits)

    async def deliver(self, http: httpx.AsyncClient, row: OutboxRow) -> bool:
        """POST the event until its receiver takes it (True) or `retry_for` has passed (False: dropped)."""
        url = self.settings.urls[row.receiver]
        backoff = FIRST_BACKOFF
        while not await self._post(http, url, row):
            if self._wall_clock() - row.made > self.settings.retry_for:
                self.stats.dropped_late += 1
                self.log.error(
                    "webhook event dropped after {:g} s of failed deliveries to {} room={} body={}",
                    self.settings.retry_for,
                    self.settings.shown_url(row.receiver),
                    row.room_id,
                    row.body,
                )
                return False
            await trio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.settings.max_backoff)
        return True

    async def _post(self, http: httpx.AsyncClient, url: str, row: OutboxRow) -> bool:
        body = row.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.settings.secret, int(self._wall_clock()), body),
        }
        try:
            # the whole delivery within `timeout` (a receiver trickling its answer cannot hold the lane),
            # and the answer's body never read (its status is all that counts)
            with trio.fail_after(self.settings.timeout):
                async with http.stream("POST", url, content=body, headers=headers) as response:
                    status = response.status_code
        except Exception as error:  # whatever the client raises, a lane never dies of it
            why = f"no answer within {self.settings.timeout:g} s" if isinstance(error, trio.TooSlowError) else error
            self._failed(row, f"{type(error).__name__}: {str(why).replace(url, '<url>')}")
            return False
        if not 200 <= status < 300:
            self._failed(row, f"HTTP {status}")
            return False
        latency = max(0.0, self._wall_clock() - row.made)
        self.stats.delivered += 1
        self.stats.latency_total += latency
        self.stats.latencies.append(latency)
        return True

    def _failed(self, row: OutboxRow, why: str) -> None:
        self.stats.failed_attempts += 1
        if self.stats.failed_attempts % 100 == 1:  # one line per outage, not one per attempt
            self.log.warning(
                "webhook delivery to {} failed ({}); retrying with backoff room={}",
                self.settings.shown_url(row.receiver),
                why,
                row.room_id,
            )

    def describe(self) -> dict[str, object]:
        return {
            "path": "root/webhooks",
            "kind": "webhooks",
            "state": "running",
            "receivers": [
                {"url": self.settings.shown_url(receiver), "queued": queued}
                for receiver, queued in enumerate(self._queued)
            ],
        }


def lane_of(room_id: str, lanes: int) -> int:
    """A stable lane for a room (the same in every process): its events go out one after another."""
    return int.from_bytes(hashlib.blake2b(room_id.encode(), digest_size=4).digest(), "big") % lanes
