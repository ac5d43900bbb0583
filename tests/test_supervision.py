"""Fault injection: crashes are contained where ARCHITECTURE says, as state and metrics show.

A crashing room is closed alone (reason `crashed`); a crashing directory,
IM courier or IM actor is restarted with backoff and keeps what it holds.
Under the mock clock a restart shows as an exact time: the restarted actor
serves again after `RestartPolicy`'s backoff, and not before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio.testing import wait_all_tasks_blocked

from roomd.actors.im import ImActor
from roomd.actors.messages import CloseReason
from roomd.actors.replies import DomainError, Refused
from roomd.actors.runtime import RestartPolicy
from roomd.qcloud.usersig import HmacUserSigner
from tests.bodies import joining, member_fields
from tests.conftest import (
    FIXED_WALL_CLOCK,
    IM_SDK_APP_ID,
    IM_SECRET,
    Api,
    eventually,
    make_settings,
    open_im_world,
    open_roomd,
)
from tests.fake_im import FakeIm

POLICY = RestartPolicy()  # what every supervisor here uses
EXACT = 1e-9  # the mock clock adds floats
NOTIFY = "send_group_system_notification"


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics, as operators read it: (name, labels) -> value."""
    response = await api.http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def kind_node(api: Api, kind: str) -> dict[str, Any]:
    """The directory of `kind` in /debug/actors."""
    tree = (await api.get("/debug/actors")).body["tree"]
    nodes: list[dict[str, Any]] = [child for child in tree["children"] if child["path"] == f"root/{kind}"]
    assert len(nodes) == 1
    return nodes[0]


class BuggyTransport(httpx.AsyncBaseTransport):
    """The fake IM in process behind an HTTP layer with a bug: its first `crashes` requests raise
    an error that is not an `httpx.HTTPError`, so the IM actor cannot judge it and crashes."""

    def __init__(self, fake: FakeIm, crashes: int) -> None:
        self._fake = fake.transport()
        self.crashes = crashes
        self.crashed_at: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if len(self.crashed_at) < self.crashes:
            self.crashed_at.append(trio.current_time())
            raise RuntimeError("injected fault")
        return await self._fake.handle_async_request(request)


@asynccontextmanager
async def running_im(transport: httpx.AsyncBaseTransport) -> AsyncIterator[ImActor]:
    settings = make_settings(ROOMD_IM__SDK_APP_ID=str(IM_SDK_APP_ID), ROOMD_IM__SECRET_KEY=IM_SECRET).im
    signer = HmacUserSigner(IM_SDK_APP_ID, IM_SECRET)
    actor = ImActor(settings, signer, path="root/im", wall_clock=lambda: FIXED_WALL_CLOCK, transport=transport)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        yield actor
        actor.stop()


def fake_im(*groups: str) -> FakeIm:
    fake = FakeIm(IM_SDK_APP_ID, "admin", secret_key=IM_SECRET)
    fake.groups.update({group: group for group in groups})
    return fake


async def test_a_crashing_room_is_closed_alone_and_its_im_group_destroyed() -> None:
    async with open_im_world() as (api, fake):
        doomed = (await api.post("create_room", {**member_fields("alice"), "roomName": "a"})).body["roomID"]
        sibling = (await api.post("create_room", {**member_fields("bob"), "roomName": "b"})).body["roomID"]
        directory = api.system.directories["multi_room"]
        crashed = await directory.call_room(doomed, "a message no room understands")  # type: ignore[arg-type]
        assert isinstance(crashed, Refused)  # the caller is answered, not left waiting
        assert (await api.post("get_pushers", {"roomID": doomed})).code == 3
        assert (await api.post("pusher_heartbeat", {"roomID": doomed, "userID": "alice"})).code == 3
        assert (await api.post("add_pusher", joining("carol", sibling))).code == 0
        await eventually(lambda: fake.calls_for(doomed)[-1:] == ["destroy_group"])
        metrics = await scrape(api)
        directory_node = await kind_node(api, "multi_room")
        assert directory.closes == {CloseReason.CRASHED: 1}
        assert fake.calls_for(doomed) == ["create_group", NOTIFY, "destroy_group"]
        assert sibling in fake.groups and doomed not in fake.groups
    closes = {labels: n for (name, labels), n in metrics.items() if name == "roomd_room_closes_total"}
    assert closes == {(("kind", "multi_room"), ("reason", "crashed")): 1}
    assert metrics[("roomd_rooms", (("kind", "multi_room"), ("state", "active")))] == 1
    assert metrics[("roomd_members", (("kind", "multi_room"),))] == 2  # bob and carol
    assert directory_node["state"] == "running" and directory_node["rooms"] == 1
    [room] = directory_node["children"]
    assert room["path"] == f"root/multi_room/{sibling}" and room["members"] == 2


async def test_a_crashing_directory_is_restarted_after_its_backoff_and_keeps_its_rooms(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_roomd(make_settings()) as api:
        kept = (await api.post("create_room", {**member_fields("alice"), "roomName": "a"})).body["roomID"]
        directory = api.system.directories["multi_room"]
        answers: list[tuple[float, object]] = []
        t0 = trio.current_time()

        async def bad_request() -> None:
            answer = await directory.mailbox.call("not a creation request", deadline=t0 + 10)  # type: ignore[arg-type]
            answers.append((trio.current_time() - t0, answer))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(bad_request)
            await wait_all_tasks_blocked()  # the first crashed the directory; two wait in its mailbox
            created = await api.post("create_room", {**member_fields("bob"), "roomName": "b"})
            created_after = trio.current_time() - t0
        assert created.code == 0
        assert (await api.post("pusher_heartbeat", {"roomID": kept, "userID": "alice"})).code == 0
        rooms = (await api.post("get_room_list")).body["rooms"]
        directory_node = await kind_node(api, "multi_room")
    # each crash answers its caller, then the directory comes back after 0.1, 0.2, 0.4 s
    backoffs = [min(POLICY.max_backoff, POLICY.first_backoff * 2**n) for n in range(3)]
    assert [at for at, _ in answers] == pytest.approx([0, backoffs[0], backoffs[0] + backoffs[1]], abs=EXACT)
    assert all(isinstance(a, Refused) and a.error is DomainError.INTERNAL for _, a in answers)
    assert created_after == pytest.approx(sum(backoffs), abs=EXACT)
    assert {room["roomID"] for room in rooms} == {kept, created.body["roomID"]}
    assert directory_node["state"] == "running" and directory_node["rooms"] == 2


async def test_a_crashing_im_courier_is_restarted_and_loses_no_call(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_im("g1")
    transport = BuggyTransport(fake, crashes=1)
    async with running_im(transport) as actor:
        t0 = trio.current_time()
        actor.notify_pusher_change("g1")
        actor.destroy_group("g1")
        await wait_all_tasks_blocked()
        assert transport.crashed_at == [t0]
        assert actor.queue_depth == 2 and fake.calls == []  # the courier waits to restart, its calls kept
        assert actor.describe()["state"] == "running"  # only the courier crashed
        await trio.sleep_until(t0 + POLICY.first_backoff)
        await wait_all_tasks_blocked()
        assert actor.queue_depth == 0
    assert [(c.api, c.answered) for c in fake.calls] == [(NOTIFY, "ok"), ("destroy_group", "ok")]
    assert [c.at for c in fake.calls] == pytest.approx([t0 + POLICY.first_backoff] * 2, abs=EXACT)  # restarted
    assert dict(actor.stats.outcomes) == {(NOTIFY, "ok"): 1, ("destroy_group", "ok"): 1}
    assert fake.groups == {}


async def test_a_crashing_im_actor_is_restarted_with_its_queue(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_im("g2")
    # one crash more than the courier's supervisor takes: it gives up, and the IM actor crashes
    transport = BuggyTransport(fake, crashes=POLICY.max_restarts + 1)
    backoffs = [min(POLICY.max_backoff, POLICY.first_backoff * 2**n) for n in range(POLICY.max_restarts)]
    assert sum(backoffs) < POLICY.window
    async with running_im(transport) as actor:
        t0 = trio.current_time()
        actor.notify_pusher_change("g2")
        gave_up = t0 + sum(backoffs)
        await trio.sleep_until(gave_up + POLICY.first_backoff / 2)
        assert actor.describe()["state"] == "restarting" and actor.queue_depth == 1
        await trio.sleep_until(gave_up + POLICY.first_backoff)
        await wait_all_tasks_blocked()
        assert actor.describe()["state"] == "running" and actor.queue_depth == 0
        assert await actor.create_group("g3", "g3") is None  # and it keeps working
    assert transport.crashed_at == pytest.approx([t0 + sum(backoffs[:n]) for n in range(len(backoffs) + 1)], abs=EXACT)
    assert [(c.api, c.body["GroupId"]) for c in fake.calls] == [(NOTIFY, "g2"), ("create_group", "g3")]
    assert [c.at for c in fake.calls] == pytest.approx([gave_up + POLICY.first_backoff] * 2, abs=EXACT)
    assert dict(actor.stats.outcomes) == {(NOTIFY, "ok"): 1, ("create_group", "ok"): 1}
