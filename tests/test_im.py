"""The IM actor: retries, backoff with jitter, collapsing, ordering per group, deadlines, drain on stop.

Most tests drive an `ImActor` whose HTTP client reaches the fake IM in
process (`FakeIm.transport()`, an `httpx.MockTransport`) under trio's mock
clock, so every time they assert is exact: jitter is either pinned to one
end of its range or checked against the bounds the retry policy gives. The
last few run roomd in process against the same fake on a real loopback
socket, end to end.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from itertools import pairwise
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

import roomd.actors.im as im_module
from roomd.actors.im import MAX_BACKOFF, NOTIFY_INTERVAL, ImActor
from roomd.actors.replies import DomainError, Refused
from roomd.config import ImSettings
from roomd.config.settings import IM_CREATE_GRACE
from roomd.qcloud.usersig import HmacUserSigner
from tests.bodies import joining, member_fields
from tests.conftest import FIXED_WALL_CLOCK, IM_SDK_APP_ID, IM_SECRET, Api, eventually, open_im_world
from tests.fake_im import FakeIm, RecordedCall, start_fake_im

CREATE = "create_group"
NOTIFY = "send_group_system_notification"
DESTROY = "destroy_group"
NOTIFY_CONTENT = '{"cmd":"notifyPusherChange","data":""}'
# the defaults but for where IM is: timeout 5 s per attempt, 5 attempts, backoff from 2 s, deadline 60 s
SETTINGS = ImSettings(sdk_app_id=IM_SDK_APP_ID, secret_key=IM_SECRET, base_url="https://im.invalid")
EXACT = 1e-9  # the mock clock adds floats


def fake_im(*groups: str) -> FakeIm:
    """The fake IM, with `groups` already created."""
    fake = FakeIm(IM_SDK_APP_ID, "admin", secret_key=IM_SECRET)
    fake.groups.update({group: group for group in groups})
    return fake


@asynccontextmanager
async def running_im(
    fake: FakeIm,
    *,
    drain_timeout: float = 5.0,
    wall_clock: Callable[[], float] = lambda: FIXED_WALL_CLOCK,
    **changes: Any,
) -> AsyncIterator[ImActor]:
    """An IM actor that reaches `fake` in process; leaving the block stops it, which drains its queue."""
    settings = dataclasses.replace(SETTINGS, **changes)
    signer = HmacUserSigner(IM_SDK_APP_ID, IM_SECRET)
    actor = ImActor(
        settings, signer, path="root/im", wall_clock=wall_clock, drain_timeout=drain_timeout, transport=fake.transport()
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        yield actor
        actor.stop()


def backoff_bounds(attempts: int, retry_backoff: float = SETTINGS.retry_backoff) -> tuple[float, float]:
    """The policy's wait after `attempts` failed attempts: half to all of base * 2^(n-1), at most MAX_BACKOFF."""
    ceiling = min(MAX_BACKOFF, retry_backoff * 2 ** (attempts - 1))
    return ceiling / 2, ceiling


def pin_jitter(monkeypatch: pytest.MonkeyPatch, end: str) -> None:
    """Make the actor's jitter always draw the lowest ("low") or the highest ("high") wait."""
    uniform = (lambda a, b: a) if end == "low" else (lambda a, b: b)
    monkeypatch.setattr(im_module, "random", types.SimpleNamespace(uniform=uniform))


def seen(fake: FakeIm, group: str | None = None) -> list[RecordedCall]:
    return [c for c in fake.calls if group is None or c.body.get("GroupId") == group]


def outcomes(actor: ImActor) -> dict[tuple[str, str], int]:
    return dict(actor.stats.outcomes)


# --- retries and backoff ------------------------------------------------------------------------

TRANSIENT = {
    "HTTP 500": {"mode": "http_500"},
    "HTTP 502": {"mode": "http_502"},
    "HTTP 503": {"mode": "http_503"},
    "HTTP 429": {"mode": "http_429"},
    "connection refused": {"mode": "refuse"},
    "connection closed unanswered": {"mode": "close"},
    "ErrorCode 10002 (internal error)": {"mode": "error_code", "error_code": 10002},
    "ErrorCode 10006 (rate limit)": {"mode": "error_code", "error_code": 10006},
    "ErrorCode 90994 (service busy)": {"mode": "error_code", "error_code": 90994},
}


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
async def test_a_transient_failure_is_retried_within_the_first_backoff(
    fault: dict[str, Any], autojump_clock: trio.abc.Clock
) -> None:
    fake = fake_im("g")
    fake.behave(times=1, **fault)
    low, high = backoff_bounds(1)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        actor.notify_pusher_change("g")
        await wait_all_tasks_blocked()
        [first] = fake.calls
        assert first.at == t0 and first.answered != "ok"
        assert actor.queue_depth == 1 and outcomes(actor) == {}  # waiting to retry, nothing counted yet
        await trio.sleep_until(t0 + high)
        await wait_all_tasks_blocked()
    first, second = fake.calls
    assert second.api == NOTIFY and second.answered == "ok"
    assert t0 + low <= second.at <= t0 + high
    assert outcomes(actor) == {(NOTIFY, "ok"): 1}
    assert actor.stats.latencies == [second.at - t0]  # queued -> delivered, retries included


async def test_an_attempt_without_a_reply_is_abandoned_after_im_timeout_and_retried(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im("g")
    fake.behave(mode="hang", times=1)
    low, high = backoff_bounds(1)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        actor.notify_pusher_change("g")
        await trio.sleep_until(t0 + SETTINGS.timeout + high)
        await wait_all_tasks_blocked()
    hung, answered = fake.calls
    assert hung.answered == "hang" and hung.at == t0
    assert answered.answered == "ok"
    assert t0 + SETTINGS.timeout + low <= answered.at <= t0 + SETTINGS.timeout + high
    assert outcomes(actor) == {(NOTIFY, "ok"): 1}


@pytest.mark.parametrize("end", ["low", "high"])
async def test_backoff_doubles_per_attempt_up_to_its_ceiling(
    end: str, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    pin_jitter(monkeypatch, end)
    fake = fake_im("g")
    fake.behave(mode="http_500")
    async with running_im(fake, retry_backoff=2.0, max_attempts=8, call_deadline=1_000) as actor:
        actor.destroy_group("g")
        await trio.sleep(500)
    gaps = [later.at - earlier.at for earlier, later in pairwise(fake.calls)]
    ceilings = [min(MAX_BACKOFF, 2.0 * 2**n) for n in range(7)]  # 2, 4, 8, 16, then MAX_BACKOFF (30)
    assert gaps == pytest.approx([c / 2 if end == "low" else c for c in ceilings], abs=EXACT)
    assert outcomes(actor) == {(DESTROY, "failed"): 1}
    assert fake.groups == {"g": "g"}


async def test_jitter_spreads_the_retries_of_many_groups_over_the_backoff_window(
    autojump_clock: trio.abc.Clock,
) -> None:
    groups = [f"g{i}" for i in range(50)]
    fake = fake_im(*groups)
    fake.behave(mode="http_500", times=len(groups))
    low, high = backoff_bounds(1)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        for group in groups:
            actor.notify_pusher_change(group)
        await trio.sleep(high)
    first, retries = fake.calls[: len(groups)], fake.calls[len(groups) :]
    assert all(c.at == t0 and c.answered == "http 500" for c in first)
    waits = sorted(c.at - t0 for c in retries)
    assert len(waits) == len(groups) and all(c.answered == "ok" for c in retries)
    assert low <= waits[0] and waits[-1] <= high
    assert len(set(waits)) == len(groups)  # no two groups retry together
    assert waits[-1] - waits[0] > (high - low) / 2  # and they spread over the window
    assert outcomes(actor) == {(NOTIFY, "ok"): len(groups)}


FINAL = {
    "notification, ErrorCode 10007 (no permission)": (NOTIFY, {"mode": "error_code", "error_code": 10007}),
    "notification to a group that is gone (10010)": (NOTIFY, {"only_group": "nothing to fail"}),
    "notification, HTTP 403": (NOTIFY, {"mode": "http_403"}),
    "destroy_group, ErrorCode 10004 (bad request)": (DESTROY, {"mode": "error_code", "error_code": 10004}),
    "destroy_group, HTTP 400": (DESTROY, {"mode": "http_400"}),
}


@pytest.mark.parametrize(("api", "fault"), FINAL.values(), ids=FINAL.keys())
async def test_a_final_failure_is_not_retried_and_is_counted(
    api: str, fault: dict[str, Any], autojump_clock: trio.abc.Clock
) -> None:
    fake = fake_im() if fault.get("only_group") else fake_im("g")
    fake.behave(**fault)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        if api == NOTIFY:
            actor.notify_pusher_change("g")
        else:
            actor.destroy_group("g")
        await trio.sleep(SETTINGS.call_deadline)
        assert actor.queue_depth == 0
    [call] = fake.calls
    assert call.api == api and call.at == t0 and call.answered != "ok"
    assert outcomes(actor) == {(api, "failed"): 1}


async def test_create_group_refused_by_im_answers_upstream_failed_and_the_group_is_destroyed(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im()
    fake.behave(mode="error_code", error_code=10004, only_api=CREATE)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        refused = await actor.create_group("g", "a room")
        assert trio.current_time() == t0  # a final answer: no retry, no wait
        await wait_all_tasks_blocked()
    assert isinstance(refused, Refused) and refused.error is DomainError.UPSTREAM_FAILED
    assert "ErrorCode 10004" in refused.detail
    # in case the group exists after all, it is destroyed: gone already (10010) counts as done
    assert [(c.api, c.answered, c.at) for c in fake.calls] == [(CREATE, "10004", t0), (DESTROY, "10010", t0)]
    assert outcomes(actor) == {(CREATE, "failed"): 1, (DESTROY, "ok"): 1}


async def test_codes_saying_it_is_so_already_count_as_success(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_im("ours", "going")
    fake.behave(mode="error_code", error_code=10015, only_api=DESTROY, only_group="going")
    async with running_im(fake) as actor:
        assert await actor.create_group("ours", "exists") is None  # 10025: it exists and is ours
        actor.destroy_group("never made")  # 10010: no such group
        actor.destroy_group("going")  # 10015: the group was dismissed
        await wait_all_tasks_blocked()
    answers = {(c.api, c.body["GroupId"], c.answered) for c in fake.calls}
    assert answers == {(CREATE, "ours", "10025"), (DESTROY, "never made", "10010"), (DESTROY, "going", "10015")}
    assert len(fake.calls) == 3  # each once
    assert outcomes(actor) == {(CREATE, "ok"): 1, (DESTROY, "ok"): 2}


async def test_a_lost_reply_is_retried_and_the_already_so_answer_completes_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im()
    low, high = backoff_bounds(1)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        fake.behave(mode="lose_reply", times=1)  # IM does the call, but its reply never arrives
        assert await actor.create_group("g", "a room") is None
        created = trio.current_time()
        fake.behave(mode="lose_reply", times=1)
        actor.destroy_group("g")
        await trio.sleep(high)
    assert [(c.api, c.answered) for c in fake.calls] == [
        (CREATE, "lost"),
        (CREATE, "10025"),
        (DESTROY, "lost"),
        (DESTROY, "10010"),
    ]
    assert fake.reply_lost == ["ok", "ok"] and fake.groups == {}
    assert t0 + low <= created == fake.calls[1].at <= t0 + high
    assert created + low <= fake.calls[3].at <= created + high
    assert outcomes(actor) == {(CREATE, "ok"): 1, (DESTROY, "ok"): 1}


async def test_a_call_is_given_up_after_max_attempts_and_its_group_moves_on(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_im("g")
    fake.behave(mode="http_503")
    async with running_im(fake, max_attempts=3) as actor:
        actor.notify_pusher_change("g")
        actor.destroy_group("g")
        await trio.sleep(SETTINGS.call_deadline)
        assert actor.queue_depth == 0
    assert [(c.api, c.answered) for c in fake.calls] == [(NOTIFY, "http 503")] * 3 + [(DESTROY, "http 503")] * 3
    assert outcomes(actor) == {(NOTIFY, "failed"): 1, (DESTROY, "failed"): 1}


# --- deadlines --------------------------------------------------------------------------------


@pytest.mark.parametrize(("end", "attempts_at"), [("low", [0, 1, 3, 7]), ("high", [0, 2, 6])])
async def test_a_call_is_given_up_when_its_next_attempt_would_come_after_its_deadline(
    end: str, attempts_at: list[float], monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    pin_jitter(monkeypatch, end)  # waits of 1, 2, 4, 8 s ("low") or 2, 4, 8 s ("high")
    fake = fake_im("g")
    fake.behave(mode="http_500")
    async with running_im(fake, call_deadline=10, max_attempts=100) as actor:
        t0 = trio.current_time()
        actor.destroy_group("g")
        await trio.sleep(100)
    assert [c.at - t0 for c in fake.calls] == pytest.approx(attempts_at, abs=EXACT)
    assert outcomes(actor) == {(DESTROY, "failed"): 1}


async def test_an_attempt_waits_im_timeout_at_most_and_never_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    pin_jitter(monkeypatch, "high")
    fake = fake_im("g")
    fake.behave(mode="hang")
    async with running_im(fake, timeout=5, call_deadline=10) as actor:
        t0 = trio.current_time()
        actor.destroy_group("g")
        # 0-5 s: the first attempt, until im.timeout; 2 s backoff; 7-10 s: the second, cut at the deadline
        await trio.sleep_until(t0 + 9.9)
        assert actor.queue_depth == 1
        await trio.sleep_until(t0 + 10)
        await wait_all_tasks_blocked()
        assert actor.queue_depth == 0
    assert [(c.at - t0, c.answered) for c in fake.calls] == [(0, "hang"), (pytest.approx(7, abs=EXACT), "hang")]
    assert outcomes(actor) == {(DESTROY, "failed"): 1}


async def test_create_group_without_a_reply_is_refused_at_im_timeout_and_then_destroyed(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im()
    fake.behave(mode="hang", only_api=CREATE)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        refused = await actor.create_group("g", "a room")
        assert trio.current_time() == pytest.approx(t0 + SETTINGS.timeout, abs=EXACT)
        await trio.sleep(SETTINGS.call_deadline)  # the rechecks' backoff is random: give them all their time
    assert isinstance(refused, Refused) and refused.error is DomainError.UPSTREAM_FAILED
    assert f"no reply within {SETTINGS.timeout:g} s" in refused.detail
    # the create may still land at IM after the destroy: "no such group" is asked again, twice
    assert [(c.api, c.answered) for c in fake.calls] == [(CREATE, "hang")] + [(DESTROY, "10010")] * 3
    assert fake.calls[1].at - t0 == pytest.approx(SETTINGS.timeout, abs=EXACT)
    assert outcomes(actor) == {(CREATE, "failed"): 1, (DESTROY, "ok"): 1}


async def test_a_create_group_that_lands_after_the_destroy_meant_for_it_is_destroyed_too() -> None:
    """Over loopback (a server goes on with a request its client stopped waiting for): IM takes
    the create in after roomd gave up on it and after roomd's first destroy."""
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, fake_im())
        fake.behave(mode="ok", delays=(0.5,), only_api=CREATE)
        settings = dataclasses.replace(SETTINGS, base_url=fake.base_url, timeout=0.3, retry_backoff=0.5)
        actor = ImActor(
            settings,
            HmacUserSigner(IM_SDK_APP_ID, IM_SECRET),
            path="root/im",
            wall_clock=lambda: FIXED_WALL_CLOCK,
            drain_timeout=5,
        )
        await nursery.start(actor.run)
        assert isinstance(await actor.create_group("g", "a room"), Refused)
        await eventually(lambda: (CREATE, "ok") in [(c.api, c.answered) for c in fake.calls] and not fake.groups)
        await eventually(lambda: actor.queue_depth == 0)
        nursery.cancel_scope.cancel()
    answered = [(c.api, c.answered) for c in fake.calls]
    assert answered[0] == (DESTROY, "10010") and answered[-1] == (DESTROY, "ok"), answered


async def test_a_create_group_that_never_reached_im_is_not_rechecked(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_im()
    fake.stop_listening()  # every connection refused: the create never reached IM
    async with running_im(fake) as actor:
        assert isinstance(await actor.create_group("g", "a room"), Refused)
        await fake.start_listening()
        await trio.sleep(SETTINGS.call_deadline)
    assert [(c.api, c.answered) for c in fake.calls if c.answered != "refused"] == [(DESTROY, "10010")]


async def test_create_group_stuck_behind_an_earlier_call_is_refused_after_its_grace_and_never_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im("g")
    fake.behave(mode="hang", only_api=DESTROY, times=1)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        actor.destroy_group("g")  # the group's previous room; IM does not answer at first
        refused = await actor.create_group("g", "again")
        assert trio.current_time() == pytest.approx(t0 + SETTINGS.timeout + IM_CREATE_GRACE, abs=EXACT)
        await trio.sleep(SETTINGS.call_deadline)
    assert isinstance(refused, Refused) and refused.error is DomainError.UPSTREAM_FAILED
    assert f"not confirmed within {SETTINGS.timeout:g} s" in refused.detail
    # the late create_group is not sent once its deadline has passed; the group is destroyed in case
    assert [(c.api, c.answered) for c in fake.calls] == [(DESTROY, "hang"), (DESTROY, "ok"), (DESTROY, "10010")]
    assert outcomes(actor) == {(DESTROY, "ok"): 2, (CREATE, "failed"): 1}


async def test_a_group_confirmed_after_its_creator_stopped_waiting_is_destroyed(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im()
    fake.behave(mode="ok", delay=0.5, only_api=CREATE)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        with trio.move_on_after(0.2):  # the creator is cancelled (e.g. its directory stops) mid-call
            await actor.create_group("g", "a room")
        await trio.sleep(SETTINGS.call_deadline)
    # IM made the group for nobody: roomd takes it down again
    assert [(c.api, c.answered) for c in fake.calls] == [(CREATE, "ok"), (DESTROY, "ok")]
    assert fake.calls[0].at - t0 == pytest.approx(0.5, abs=EXACT)  # confirmed after the creator left
    assert "g" not in fake.groups


# --- collapsing and ordering ---------------------------------------------------------------------


async def test_notifications_queued_together_collapse_into_one(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_im("g")
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        for _ in range(10):
            actor.notify_pusher_change("g")
        assert actor.queue_depth == 1
        await wait_all_tasks_blocked()
    assert [(c.api, c.at, c.body) for c in fake.calls] == [(NOTIFY, t0, {"GroupId": "g", "Content": NOTIFY_CONTENT})]
    assert outcomes(actor) == {(NOTIFY, "ok"): 1, (NOTIFY, "collapsed"): 9}


async def test_a_notification_in_flight_is_not_collapsed_into_and_the_next_waits_the_interval(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im("g")
    fake.behave(delay=0.25)  # IM takes 0.25 s to answer (the fake records a call when it answers)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        actor.notify_pusher_change("g")
        await wait_all_tasks_blocked()  # in flight
        for _ in range(5):
            actor.notify_pusher_change("g")  # one more is queued; the other four collapse into it
        assert actor.queue_depth == 2
        await trio.sleep(5)
    # the second goes out NOTIFY_INTERVAL after the first was delivered
    assert [c.at - t0 for c in fake.calls] == pytest.approx([0.25, 0.25 + NOTIFY_INTERVAL + 0.25], abs=EXACT)
    assert outcomes(actor) == {(NOTIFY, "ok"): 2, (NOTIFY, "collapsed"): 4}


async def test_a_group_gets_at_most_one_notification_per_interval_the_last_after_the_last_change(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im("g")
    interval = NOTIFY_INTERVAL
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        actor.notify_pusher_change("g")  # goes out at once
        for k in range(30):  # then five changes per interval for six intervals, none on an interval's edge
            await trio.sleep_until(t0 + interval * (0.1 + 0.2 * k))
            actor.notify_pusher_change("g")
        last_change = trio.current_time()
        await trio.sleep(interval)
    sent = [c.at - t0 for c in fake.calls]
    assert sent == pytest.approx([j * interval for j in range(7)], abs=EXACT)
    assert fake.calls[-1].at > last_change
    assert outcomes(actor) == {(NOTIFY, "ok"): 7, (NOTIFY, "collapsed"): 31 - 7}


async def test_a_groups_calls_keep_their_order_and_other_groups_do_not_wait(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_im()
    fake.behave(mode="http_500", times=1, only_group="slow")
    low, high = backoff_bounds(1)
    created: dict[str, float] = {}
    async with running_im(fake) as actor:

        async def create(group: str) -> None:
            assert await actor.create_group(group, f"room {group}") is None
            created[group] = trio.current_time()

        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(create, "slow")
            nursery.start_soon(create, "fast")
            await wait_all_tasks_blocked()  # "slow" waits to retry its create_group
            for group in ("slow", "fast"):
                actor.notify_pusher_change(group)
                actor.destroy_group(group)
    slow, fast = seen(fake, "slow"), seen(fake, "fast")
    assert [(c.api, c.at) for c in fast] == [(CREATE, t0), (NOTIFY, t0), (DESTROY, t0)]
    assert [(c.api, c.answered) for c in slow] == [
        (CREATE, "http 500"),
        (CREATE, "ok"),
        (NOTIFY, "ok"),
        (DESTROY, "ok"),
    ]
    retried = slow[1].at
    assert t0 + low <= retried <= t0 + high
    assert [c.at for c in slow[1:]] == [retried] * 3  # the notification and destroy_group waited for it
    assert created == {"fast": t0, "slow": retried}
    assert fake.groups == {}


async def test_after_destroy_group_a_new_room_of_the_same_id_is_notified_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im()
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        assert await actor.create_group("g", "first life") is None
        actor.notify_pusher_change("g")
        actor.destroy_group("g")
        await wait_all_tasks_blocked()
        assert await actor.create_group("g", "second life") is None
        actor.notify_pusher_change("g")  # the interval counts from the last notification of this life only
        await wait_all_tasks_blocked()
    assert [(c.api, c.at) for c in fake.calls] == [
        (CREATE, t0),
        (NOTIFY, t0),
        (DESTROY, t0),
        (CREATE, t0),
        (NOTIFY, t0),
    ]


# --- stopping, outages, limits ------------------------------------------------------------------


async def test_stop_delivers_the_queue_before_the_actor_ends(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_im("a", "b")
    fake.behave(mode="http_500", times=1, only_group="a")
    low, high = backoff_bounds(1)
    async with running_im(fake) as actor:
        t0 = trio.current_time()
        actor.notify_pusher_change("a")
        actor.destroy_group("a")
        actor.destroy_group("b")
        await wait_all_tasks_blocked()
        actor.stop()
        await wait_all_tasks_blocked()
        assert actor.describe()["state"] == "stopping" and actor.queue_depth == 2  # "a" is waiting to retry
    ended = trio.current_time()
    assert [(c.api, c.answered) for c in seen(fake, "a")] == [(NOTIFY, "http 500"), (NOTIFY, "ok"), (DESTROY, "ok")]
    assert t0 + low <= ended <= t0 + high
    assert ended == fake.calls[-1].at  # the actor ended as soon as its last call was delivered
    assert actor.queue_depth == 0 and fake.groups == {}
    assert outcomes(actor) == {(NOTIFY, "ok"): 1, (DESTROY, "ok"): 2}


async def test_stop_gives_up_on_calls_still_undelivered_after_the_drain_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im("a", "b")
    fake.behave(mode="hang")
    async with running_im(fake, drain_timeout=3) as actor:
        t0 = trio.current_time()
        actor.notify_pusher_change("a")
        actor.destroy_group("a")
        actor.destroy_group("b")
        await wait_all_tasks_blocked()
    assert trio.current_time() == pytest.approx(t0 + 3, abs=EXACT)  # before im.timeout (5 s) ends an attempt
    assert actor.queue_depth == 3
    assert sorted((c.api, c.body["GroupId"], c.at) for c in fake.calls) == [(DESTROY, "b", t0), (NOTIFY, "a", t0)]
    assert outcomes(actor) == {}
    assert actor.describe()["state"] == "stopping"


async def test_an_outage_loses_no_call_and_each_group_hears_of_its_last_change_afterwards(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im("a", "b", "c")
    refused: list[tuple[float, Refused | None]] = []
    async with running_im(fake) as actor:
        t0 = trio.current_time()

        async def weather() -> None:  # 5 s refusing connections, then 5 s hanging, then well
            fake.stop_listening()
            await trio.sleep_until(t0 + 5)
            fake.behave(mode="hang")
            await fake.start_listening()
            await trio.sleep_until(t0 + 10)
            fake.behave()

        async def create_during_the_outage() -> None:
            await trio.sleep_until(t0 + 1)
            answer = await actor.create_group("d", "made during the outage")
            refused.append((trio.current_time(), answer))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(weather)
            nursery.start_soon(create_during_the_outage)
            for n in range(40):  # a change in "a" and "b" every 0.25 s for 10 s
                await trio.sleep_until(t0 + 0.125 + 0.25 * n)
                actor.notify_pusher_change("a")
                actor.notify_pusher_change("b")
                if n == 20:
                    actor.destroy_group("c")
        last_change = trio.current_time()
        await trio.sleep(SETTINGS.call_deadline)
        calls_when_done = len(fake.calls)
        await trio.sleep(SETTINGS.call_deadline)
        assert len(fake.calls) == calls_when_done  # nothing is retried forever
    [(answered_at, answer)] = refused
    assert isinstance(answer, Refused) and answered_at <= t0 + 1 + SETTINGS.timeout
    assert "d" not in fake.groups
    for group in ("a", "b"):
        delivered = [c.at for c in seen(fake, group) if c.answered == "ok"]
        # the first change, in flight all along, then one for every later change, collapsed
        assert len(delivered) == 2 and delivered[0] >= t0 + 10
        assert delivered[1] == pytest.approx(delivered[0] + NOTIFY_INTERVAL, abs=EXACT) and delivered[1] > last_change
    assert [c.api for c in seen(fake, "c") if c.answered == "ok"] == [DESTROY] and "c" not in fake.groups
    assert {c.answered for c in fake.calls} >= {"refused", "hang", "ok"}
    failed = {key: n for key, n in outcomes(actor).items() if key[1] == "failed"}
    assert failed == {(CREATE, "failed"): 1}
    assert outcomes(actor)[(NOTIFY, "collapsed")] == 2 * 40 - 2 * 2
    assert actor.queue_depth == 0


async def test_faults_during_churn_lose_no_call(autojump_clock: trio.abc.Clock) -> None:
    rooms = [f"r{i}" for i in range(5)]
    fake = fake_im(*rooms)
    last_change: dict[str, float] = {}
    async with running_im(fake, max_attempts=10) as actor:

        async def churn(group: str, n: int) -> None:
            for _ in range(12):
                actor.notify_pusher_change(group)
                last_change[group] = trio.current_time()
                await trio.sleep(0.2 + 0.01 * n)
            if n == 4:  # one room ends while IM misbehaves
                actor.destroy_group(group)

        faults = ("http_500", "close", "ok", "error_code", "refuse", "http_429", "lose_reply", "ok")
        fake.behave(mode=faults[0])

        async def misbehave() -> None:  # a new fault every 0.5 s, then well
            for mode in faults[1:]:
                await trio.sleep(0.5)
                fake.behave(mode=mode, error_code=10002)
            await trio.sleep(0.5)
            fake.behave()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(misbehave)
            for n, group in enumerate(rooms):
                nursery.start_soon(churn, group, n)
        await trio.sleep(SETTINGS.call_deadline)
        assert actor.queue_depth == 0
    assert not [key for key in outcomes(actor) if key[1] == "failed"]
    assert set(fake.groups) == set(rooms[:4])
    for group in rooms[:4]:
        delivered = [c.at for c in seen(fake, group) if c.api == NOTIFY and c.answered in ("ok", "lost")]
        assert delivered and max(delivered) >= last_change[group], group  # its last change reached the group
    assert [c.answered for c in fake.calls[: len(rooms)]] == ["http 500"] * len(rooms)  # the faults did happen
    assert {c.answered for c in fake.calls} > {"http 500", "ok"}


async def test_a_full_queue_drops_notifications_and_refuses_creations(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    monkeypatch.setattr(im_module, "QUEUE_LIMIT", 2)
    fake = fake_im("a", "b")
    fake.behave(mode="hang")
    async with running_im(fake, drain_timeout=0) as actor:
        actor.destroy_group("a")
        actor.destroy_group("b")
        actor.notify_pusher_change("c")
        refused = await actor.create_group("d", "d")
        assert actor.queue_depth == 2
    assert isinstance(refused, Refused) and refused.error is DomainError.UPSTREAM_FAILED
    assert "queue is full" in refused.detail
    assert outcomes(actor) == {(NOTIFY, "dropped"): 1}
    assert {c.body["GroupId"] for c in fake.calls} == {"a", "b"}


async def test_the_admin_usersig_is_made_once_and_remade_shortly_before_it_expires(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = fake_im("g")
    wall = [FIXED_WALL_CLOCK]
    async with running_im(fake, wall_clock=lambda: wall[0], usersig_expire=1_000) as actor:
        for at in (0, 899, 900):  # remade a tenth of its lifetime before it expires
            wall[0] = FIXED_WALL_CLOCK + at
            actor.destroy_group("g")
            await wait_all_tasks_blocked()
    first, second, third = (c.query for c in fake.calls)
    assert fake.rejected_auth == 0  # each verifies
    assert first["usersig"] == second["usersig"] != third["usersig"]
    assert len({c.query["random"] for c in fake.calls}) == 3
    assert all(set(c.query) == {"sdkappid", "identifier", "usersig", "random", "contenttype"} for c in fake.calls)


# --- end to end: roomd in process, the fake IM on a loopback socket ------------------------------


def ordered_as_a_room_life(calls: list[str]) -> bool:
    """create_group first, destroy_group last, only notifications between."""
    return len(calls) >= 2 and calls[0] == CREATE and calls[-1] == DESTROY and all(c == NOTIFY for c in calls[1:-1])


async def test_the_three_calls_on_the_wire() -> None:
    async with open_im_world() as (api, fake):
        created = await api.post(
            "create_room", {"userID": "alice", "roomInfo": "一个很长的房间名字，超过三十个字节的那种"}
        )
        room_id = created.body["roomID"]
        assert created.code == 0
        assert (await api.post("add_pusher", joining("alice", room_id))).code == 0
        assert (await api.post("destroy_room", {"roomID": room_id, "userID": "alice"})).code == 0
        await eventually(lambda: len(fake.calls) == 3)
    create, notify, destroy = fake.calls
    assert fake.rejected_auth == 0
    assert [c.answered for c in fake.calls] == ["ok", "ok", "ok"]
    assert create.api == CREATE
    assert create.body == {
        "Owner_Account": "admin",
        "Type": "AVChatRoom",
        "GroupId": room_id,
        "Name": "一个很长的房间名字，",  # 30 bytes, cut between characters
    }
    assert notify.api == NOTIFY
    assert notify.body == {"GroupId": room_id, "Content": NOTIFY_CONTENT}
    assert destroy.api == DESTROY and destroy.body == {"GroupId": room_id}
    for call in fake.calls:
        assert set(call.query) == {"sdkappid", "identifier", "usersig", "random", "contenttype"}
        assert call.query["sdkappid"] == str(IM_SDK_APP_ID)
        assert call.query["identifier"] == "admin" and call.query["contenttype"] == "json"
        assert 0 <= int(call.query["random"]) < 2**32
    # one admin UserSig, reused; a fresh random per call
    assert len({c.query["usersig"] for c in fake.calls}) == 1
    assert len({c.query["random"] for c in fake.calls}) == 3


async def test_scripted_room_lives_reach_im_in_order() -> None:
    env = {
        "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "0.4",
        "ROOMD_KINDS__MULTI_ROOM__MAX_IDLE_DURATION": "0.4",
    }
    async with open_im_world(**env) as (api, fake):

        async def create(creator: str, *, join: bool = True) -> str:
            body: dict[str, Any] = {"userID": creator, "roomInfo": f"{creator}'s"}
            if join:
                body.update(member_fields(creator))  # seed era: the creator joins at once
            reply = await api.post("create_room", body)
            assert reply.code == 0
            return str(reply.body["roomID"])

        destroyed = await create("d")
        await api.post("add_pusher", joining("d2", destroyed))
        await api.post("destroy_room", {"roomID": destroyed, "userID": "d"})

        creator_left = await create("c")
        await api.post("add_pusher", joining("c2", creator_left))
        await api.post("delete_pusher", {"roomID": creator_left, "userID": "c"})

        emptied = await create("e")
        await api.post("add_pusher", joining("e", emptied, userName="renamed"))  # an update that changed something
        await api.post("add_pusher", joining("e", emptied, userName="renamed"))  # no change: no notification
        await api.post("delete_pusher", {"roomID": emptied, "userID": "e"})

        timed_out = await create("t")
        await api.post("add_pusher", joining("t2", timed_out))
        idle = await create("i", join=False)

        rooms = [destroyed, creator_left, emptied, timed_out, idle]
        await eventually(lambda: all(fake.calls_for(r)[-1:] == [DESTROY] for r in rooms))
    for room in rooms:
        assert ordered_as_a_room_life(fake.calls_for(room)), (room, fake.calls_for(room))
    assert fake.calls_for(idle) == [CREATE, DESTROY]
    assert fake.calls_for(emptied).count(NOTIFY) >= 1
    assert fake.groups == {}


async def test_failing_create_group_leaves_no_room_and_answers_6() -> None:
    async with open_im_world() as (api, fake):
        fake.behave(mode="error_code", error_code=10004, only_api=CREATE)
        reply = await api.post("create_room", {"userID": "alice", "roomInfo": "r", "roomID": "doomed"})
        assert reply.code == 6 and reply.body["message"] == "服务器内部错误"
        assert "ErrorCode 10004" in reply.body["detail"]
        assert (await api.post("get_pushers", {"roomID": "doomed"})).code == 3
        fake.behave()  # IM is well again: the same roomID can be created
        assert (await api.post("create_room", {"userID": "alice", "roomInfo": "r", "roomID": "doomed"})).code == 0


async def test_rooms_answer_at_once_while_im_is_down_and_im_hears_of_them_afterwards() -> None:
    async with open_im_world(ROOMD_IM__TIMEOUT="0.3", ROOMD_IM__MAX_ATTEMPTS="50") as (api, fake):
        room_id = (await api.post("create_room", {**member_fields("alice"), "roomName": "r"})).body["roomID"]
        await eventually(lambda: fake.calls_for(room_id) == [CREATE, NOTIFY])
        fake.stop_listening()  # connections are refused: real transport errors
        started = trio.current_time()
        for n in range(3):
            assert (await api.post("add_pusher", joining(f"g{n}", room_id))).code == 0
            assert (await api.post("pusher_heartbeat", {"roomID": room_id, "userID": "alice"})).code == 0
            assert (await api.post("delete_pusher", {"roomID": room_id, "userID": f"g{n}"})).code == 0
        assert trio.current_time() - started < 0.5  # nothing above waited for IM (real time: generous)
        during = await api.post("create_room", {"userID": "carol", "roomInfo": "r3", "roomID": "third"})
        assert during.code == 6  # only create_room waits for IM, up to im.timeout
        await fake.start_listening()
        im = api.system.im
        await eventually(lambda: im.queue_depth == 0)
        resumed = [c for c in fake.calls if c.body.get("GroupId") == room_id and c.answered == "ok"][2:]
    assert [c.api for c in resumed] == [NOTIFY] * len(resumed) and 1 <= len(resumed) <= 2
    assert im.stats.outcomes[(NOTIFY, "failed")] == 0
    assert "third" not in fake.groups


async def test_im_not_configured_makes_no_calls(api: Api) -> None:
    alice = member_fields("alice")
    reply = await api.post("create_room", {**alice, "roomName": "r"})
    assert reply.code == 0
    await wait_all_tasks_blocked()  # the room reports its first member after the reply
    assert api.system.im.skipped == 2  # type: ignore[attr-defined]  # create_group, notification
