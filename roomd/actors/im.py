"""The IM actor: the one place that talks to Tencent IM for rooms.

It owns one HTTP client and one line of calls per group. A group's calls go
out one at a time in the order they were queued, so a room's notifications
never overtake its create_group and its destroy_group comes after them.
A notification queued behind another still-queued notification for the same
group is collapsed into it, and a group gets at most one notification per
`NOTIFY_INTERVAL`, so a burst of joins costs a few calls, not one each.
Failures are judged once (`qcloud.im_api.judge_reply`, `_transport_failure`)
and retried with exponential backoff and jitter, bounded by
`im.max_attempts` and a deadline; a call that finally fails is logged once
and counted.

With IM not configured (sdk_app_id 0) `SkippedIm` stands in: every call is
skipped and logged at debug level.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import httpx
import trio
from loguru import logger

from roomd import upstream_replies
from roomd.actors.replies import DomainError, Refused
from roomd.actors.runtime import ReplySlot, supervised
from roomd.config import ImSettings
from roomd.config.settings import IM_CREATE_GRACE as CREATE_GRACE
from roomd.qcloud import im_api
from roomd.qcloud.im_api import ImApi, ImRequest, Judgement, Verdict
from roomd.qcloud.usersig import UserSigner

NOTIFY_INTERVAL = 0.5  # seconds between two notifications to one group
MAX_CONCURRENT_CALLS = 16  # HTTP requests to IM in flight at once
QUEUE_LIMIT = 100_000  # queued calls; beyond it notifications are dropped (logged, counted)
MAX_BACKOFF = 30.0  # seconds, the longest wait between two attempts
ABSENT_RECHECKS = 2  # times "no such group" is asked again after a create_group that may still land
ADMIN_SIG_REFRESH = 86_400  # make a new admin UserSig this long before the old one expires


class SkippedIm:
    """IM not configured: group calls succeed without leaving the process."""

    queue_depth = 0

    def __init__(self, path: str) -> None:
        self.path = path
        self.log = logger.bind(actor=path)
        self.stats = ImStats()
        self.skipped = 0
        self.started_at = trio.current_time()

    def describe(self) -> dict[str, object]:
        return {
            "path": self.path,
            "kind": "im",
            "state": "not configured",
            "queue_depth": 0,
            "uptime": round(trio.current_time() - self.started_at, 3),
        }

    async def create_group(self, group_id: str, name: str, *, deadline: float = math.inf) -> Refused | None:
        await trio.lowlevel.checkpoint()
        self._skip(ImApi.CREATE_GROUP, group_id)
        return None

    def ensure_group(self, group_id: str, name: str) -> None:
        self._skip(ImApi.CREATE_GROUP, group_id)

    def notify_pusher_change(self, group_id: str) -> None:
        self._skip(ImApi.SEND_NOTIFICATION, group_id)

    def send_notification(self, group_id: str, content: str) -> bool:
        self._skip(ImApi.SEND_NOTIFICATION, group_id)
        return True

    def group_state(self, group_id: str) -> dict[str, object]:
        return {"im": "not configured"}

    def destroy_group(self, group_id: str, *, on_done: Callable[[], None] | None = None) -> None:
        self._skip(ImApi.DESTROY_GROUP, group_id)
        if on_done is not None:  # there is no group to wait for
            on_done()

    def _skip(self, api: ImApi, group_id: str) -> None:
        self.skipped += 1
        self.stats.record(api, "skipped")
        self.log.debug("IM not configured; skipped {} group={}", api.value, group_id)


@dataclass(eq=False)
class _Call:
    request: ImRequest
    queued_at: float
    deadline: float
    reply: ReplySlot | None = None
    on_done: Callable[[], None] | None = None  # run once IM confirmed the call
    # a destroy after a create_group whose outcome is unknown: that create may still land at IM
    # after this destroy, so "no such group" is asked again (with backoff) before it is believed
    recheck_absent: bool = False

    @property
    def is_notification(self) -> bool:
        """A "pusher change" notification: later ones collapse into it (an operator's do not)."""
        return (
            self.request.api is ImApi.SEND_NOTIFICATION
            and self.request.body.get("Content") == im_api.PUSHER_CHANGE_CONTENT
        )


@dataclass
class _GroupLine:
    """The calls queued for one group."""

    calls: collections.deque[_Call] = field(default_factory=collections.deque)
    in_flight: _Call | None = None  # popped, being delivered: later notifications must not collapse into it
    arrived: trio.Event = field(default_factory=trio.Event)  # set when a call is queued behind in_flight


@dataclass
class ImStats:
    """Counters for metrics: calls by (api, outcome) and queue-to-delivery latencies."""

    outcomes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, queued -> done, last 10,000

    def record(self, api: ImApi, outcome: str, latency: float | None = None) -> None:
        self.outcomes[(api.value, outcome)] += 1
        if latency is not None:
            self.latencies.append(latency)
            if len(self.latencies) > 10_000:
                del self.latencies[:5_000]


class AdminSig:
    """The administrator's UserSig: made once, remade shortly before it expires."""

    def __init__(self, signer: UserSigner, settings: ImSettings, wall_clock: Callable[[], float]) -> None:
        self._signer = signer
        self._settings = settings
        self._wall_clock = wall_clock
        self._sig = ""
        self._renew_at = 0
        self.made = 0

    def current(self) -> str:
        now = int(self._wall_clock())
        if not self._sig or now >= self._renew_at:
            expire = self._settings.usersig_expire
            self._sig = self._signer.make(self._settings.administrator, now=now, expire=expire)
            self._renew_at = now + expire - min(ADMIN_SIG_REFRESH, expire // 10)
            self.made += 1
        return self._sig


class ImActor:
    def __init__(
        self,
        settings: ImSettings,
        signer: UserSigner,
        *,
        path: str,
        wall_clock: Callable[[], float],
        drain_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network under the HTTP client (tests pass an `httpx.MockTransport`)."""
        self.settings = settings
        self.drain_timeout = drain_timeout
        self.path = path
        self.started_at = trio.current_time()
        self.stats = ImStats()
        self.log = logger.bind(actor=path)
        self._admin_sig = AdminSig(signer, settings, wall_clock)
        self._lines: dict[str, _GroupLine] = {}
        self._last_notified: dict[str, float] = {}  # group -> trio time; forgotten on destroy
        self._queued = 0
        self._limiter = trio.CapacityLimiter(MAX_CONCURRENT_CALLS)
        self._transport = transport  # None: the real network
        self._client: httpx.AsyncClient | None = None
        self._nursery: trio.Nursery | None = None
        self._stop = trio.Event()
        self._idle = trio.Event()
        self._idle.set()

    @property
    def queue_depth(self) -> int:
        return self._queued

    def describe(self) -> dict[str, object]:
        state = "stopping" if self._stop.is_set() else ("running" if self._nursery else "restarting")
        return {
            "path": self.path,
            "kind": "im",
            "state": state,
            "queue_depth": self._queued,
            "groups_with_calls": len(self._lines),
            "uptime": round(trio.current_time() - self.started_at, 3),
        }

    # --- the actor ------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[ImActor] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until stopped; a crash restarts the actor (with backoff), keeping every queued call."""
        self.log.info("IM actor started base_url={} sdkAppID={}", self.settings.base_url, self.settings.sdk_app_id)
        started = False

        async def incarnation() -> None:
            nonlocal started
            try:
                async with (
                    httpx.AsyncClient(
                        base_url=self.settings.base_url, timeout=self.settings.timeout, transport=self._transport
                    ) as client,
                    trio.open_nursery() as nursery,
                ):
                    self._client, self._nursery = client, nursery
                    for group_id, line in self._lines.items():  # calls queued before a restart
                        nursery.start_soon(self._courier, group_id, line, name=f"im {group_id}")
                    if not started:
                        started = True
                        task_status.started(self)
                    await self._stop.wait()
                    with trio.move_on_after(self.drain_timeout):
                        await self._idle.wait()
                    if self._queued:
                        self.log.warning("IM actor stopping with {} calls undelivered", self._queued)
                    nursery.cancel_scope.cancel()
            finally:
                self._client = self._nursery = None

        await supervised("IM actor", incarnation, log=self.log)
        self.log.info("IM actor stopped")

    def stop(self) -> None:
        """Deliver what is queued (for at most `drain_timeout` seconds), then end."""
        self._stop.set()

    # --- ImPort -----------------------------------------------------------------

    async def create_group(self, group_id: str, name: str, *, deadline: float = math.inf) -> Refused | None:
        """Queue create_group and wait for it, up to im.timeout in all and never past `deadline`
        (the caller's, in trio time)."""
        if self._queued >= QUEUE_LIMIT:
            return Refused(DomainError.UPSTREAM_FAILED, "the IM queue is full; retry shortly")
        now = trio.current_time()
        slot = ReplySlot()
        request = im_api.create_group(group_id, name, owner=self.settings.administrator)
        deadline = min(now + self.settings.timeout, deadline - CREATE_GRACE)
        self._enqueue(_Call(request, now, deadline, slot))
        judgement: Judgement | None = None
        try:
            with trio.move_on_at(deadline + CREATE_GRACE):
                judgement = await slot.wait()
        finally:
            if judgement is None and not slot.abandon():  # the answer came in the same instant
                judgement = slot.value
        if judgement is None:  # a confirmation that comes later destroys the group (_drain_line)
            return Refused(
                DomainError.UPSTREAM_FAILED,
                f"IM create_group was not confirmed within {self.settings.timeout:g} s",
            )
        if judgement.verdict is Verdict.DONE:
            return None
        return Refused(DomainError.UPSTREAM_FAILED, f"IM create_group failed: {judgement.error}")

    def notify_pusher_change(self, group_id: str) -> None:
        line = self._lines.get(group_id)
        if line is not None and line.calls and line.calls[-1].is_notification:
            self.stats.record(ImApi.SEND_NOTIFICATION, "collapsed")
            return
        if self._queued >= QUEUE_LIMIT:
            self.stats.record(ImApi.SEND_NOTIFICATION, "dropped")
            self.log.warning("IM queue full ({} calls); dropped a notification group={}", self._queued, group_id)
            return
        self._enqueue_background(im_api.pusher_change_notification(group_id))

    def send_notification(self, group_id: str, content: str) -> bool:
        """Queue an operator's system notification to the group; False when the queue is full."""
        if self._queued >= QUEUE_LIMIT:
            self.stats.record(ImApi.SEND_NOTIFICATION, "dropped")
            return False
        self._enqueue_background(im_api.custom_notification(group_id, content))
        return True

    def group_state(self, group_id: str) -> dict[str, object]:
        """The group's calls waiting in this process, and the one being delivered."""
        line = self._lines.get(group_id)
        if line is None:
            return {"queued": [], "in_flight": None}
        return {
            "queued": [call.request.api.value for call in line.calls],
            "in_flight": line.in_flight.request.api.value if line.in_flight is not None else None,
        }

    def ensure_group(self, group_id: str, name: str) -> None:
        """Queue create_group for a room that exists already (restored): nobody waits for it,
        and unlike a creation's, a failure does not destroy the group."""
        self._enqueue_background(im_api.create_group(group_id, name, owner=self.settings.administrator))

    def destroy_group(self, group_id: str, *, on_done: Callable[[], None] | None = None) -> None:
        """Queue destroy_group; `on_done` runs once IM has confirmed that the group is gone."""
        self._enqueue_background(im_api.destroy_group(group_id), on_done=on_done)

    # --- queueing -----------------------------------------------------------------

    def _enqueue_background(self, request: ImRequest, *, on_done: Callable[[], None] | None = None) -> None:
        now = trio.current_time()
        self._enqueue(_Call(request, now, now + self.settings.call_deadline, on_done=on_done))

    def _enqueue(self, call: _Call) -> None:
        group_id = call.request.group_id
        line = self._lines.get(group_id)
        self._count_in()
        if line is None:
            line = self._lines[group_id] = _GroupLine()
            line.calls.append(call)
            if self._nursery is not None:  # else the next incarnation starts its courier
                self._nursery.start_soon(self._courier, group_id, line, name=f"im {group_id}")
        else:
            line.calls.append(call)
            line.arrived.set()

    async def _courier(self, group_id: str, line: _GroupLine) -> None:
        """Deliver one group's calls in order until its line is empty; a crash restarts it."""
        await supervised(f"IM courier {group_id}", partial(self._drain_line, group_id, line), log=self.log)
        del self._lines[group_id]

    async def _drain_line(self, group_id: str, line: _GroupLine) -> None:
        if line.in_flight is not None:  # a crash interrupted it: it goes out again, first
            line.calls.appendleft(line.in_flight)
            line.in_flight = None
        while line.calls:
            call = line.calls[0]
            if call.is_notification:
                # while waiting, later notifications collapse into this queued one
                last = self._last_notified.get(group_id, -math.inf)
                await trio.sleep_until(last + NOTIFY_INTERVAL)
            line.in_flight = line.calls.popleft()
            line.arrived = trio.Event()
            judgement = await self._deliver(call, line)
            line.in_flight = None
            self._count_out()
            if call.is_notification:
                self._last_notified[group_id] = trio.current_time()
            elif call.request.api is ImApi.DESTROY_GROUP:
                self._last_notified.pop(group_id, None)
            if call.on_done is not None and judgement.verdict is Verdict.DONE:
                try:
                    call.on_done()
                except Exception:
                    self.log.exception(
                        "IM {} done, but what follows it failed group={}", call.request.api.value, group_id
                    )
            if call.reply is not None:
                call.reply.put(judgement)
                if judgement.verdict is not Verdict.DONE or call.reply.abandoned:
                    # the group may exist after all (an attempt timed out), or exists for a room
                    # whose creator was already told no: make sure it does not
                    now = trio.current_time()
                    cleanup = im_api.destroy_group(group_id)
                    unknown = judgement.verdict is not Verdict.DONE and judgement.may_have_landed
                    deadline = now + self.settings.call_deadline
                    line.calls.appendleft(_Call(cleanup, now, deadline, recheck_absent=unknown))
                    self._count_in()

    def _count_in(self) -> None:
        if self._queued == 0:
            self._idle = trio.Event()
        self._queued += 1

    def _count_out(self) -> None:
        self._queued -= 1
        if self._queued == 0:
            self._idle.set()

    # --- delivery -----------------------------------------------------------------

    async def _deliver(self, call: _Call, line: _GroupLine) -> Judgement:
        api, group_id = call.request.api, call.request.group_id
        attempts = 0
        may_have_landed = False
        while True:
            attempts += 1
            remaining = call.deadline - trio.current_time()
            judgement = await self._attempt(call.request, min(self.settings.timeout, remaining))
            may_have_landed |= judgement.verdict is Verdict.RETRY and not judgement.unsent
            if call.recheck_absent and judgement.already and not line.calls and attempts <= ABSENT_RECHECKS:
                judgement = Judgement(Verdict.RETRY, "no such group yet; the create_group without a reply may land")
            if judgement.verdict is not Verdict.RETRY or attempts >= self.settings.max_attempts:
                break
            delay = self._backoff(attempts)
            if trio.current_time() + delay >= call.deadline:
                break
            if call.recheck_absent:  # a call queued behind (a new create_group) takes the group over
                with trio.move_on_after(delay):
                    await line.arrived.wait()
                if line.calls:
                    judgement = Judgement(Verdict.DONE, already=True)
                    break
            else:
                await trio.sleep(delay)
        if may_have_landed:
            judgement = dataclasses.replace(judgement, may_have_landed=True)
        latency = trio.current_time() - call.queued_at
        if judgement.verdict is Verdict.DONE:
            self.stats.record(api, "ok", latency)
            self.log.debug("IM {} done group={} attempts={}", api.value, group_id, attempts)
        else:
            self.stats.record(api, "failed")
            self.log.error(
                "IM {} failed group={} attempts={} last_error={}",
                api.value,
                group_id,
                attempts,
                judgement.error,
            )
        return judgement

    def _backoff(self, attempts: int) -> float:
        """Exponential, with 'equal jitter': between half and all of base * 2^(n-1)."""
        ceiling = min(MAX_BACKOFF, self.settings.retry_backoff * 2.0 ** (attempts - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _attempt(self, request: ImRequest, seconds: float) -> Judgement:
        assert self._client is not None
        if seconds <= 0:
            return Judgement(Verdict.FAILED, "deadline passed before an attempt")
        params = im_api.query_params(
            sdk_app_id=self.settings.sdk_app_id,
            administrator=self.settings.administrator,
            admin_sig=self._admin_sig.current(),
            random=secrets.randbelow(2**32),
        )
        with trio.move_on_after(seconds):
            async with self._limiter:
                try:
                    async with self._client.stream("POST", request.path, params=params, json=request.body) as response:
                        content = await upstream_replies.read_at_most(response)
                except httpx.HTTPError as error:
                    return _transport_failure(error)
            return im_api.judge_reply(request.api, response.status_code, content)
        return Judgement(Verdict.RETRY, f"no reply within {seconds:g} s")


def _transport_failure(error: httpx.HTTPError) -> Judgement:
    """Every failure below HTTP is worth a retry: refused, reset, timed out, malformed."""
    kind = type(error).__name__
    text = str(error) or "no detail"
    unsent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
    return Judgement(Verdict.RETRY, f"{kind}: {text}", unsent=unsent)
