"""Fault injection: crashes are logged with their stack and contained where ARCHITECTURE says."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import trio
from loguru import logger

from roomd.actors.im import ImActor
from roomd.actors.messages import CloseReason
from roomd.qcloud.im_api import ImRequest, Judgement
from roomd.qcloud.usersig import HmacUserSigner
from tests.bodies import joining, member_fields
from tests.conftest import IM_SDK_APP_ID, IM_SECRET, eventually, make_settings, open_im_world
from tests.fake_im import FakeIm, start_fake_im


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), format="{extra[actor]} | {message}")
    yield lines
    logger.remove(sink)


async def test_a_crashing_room_is_closed_alone_and_its_im_group_destroyed(log_lines: list[str]) -> None:
    async with open_im_world() as (api, fake):
        doomed = (await api.post("create_room", {**member_fields("alice"), "roomName": "a"})).body["roomID"]
        sibling = (await api.post("create_room", {**member_fields("bob"), "roomName": "b"})).body["roomID"]
        directory = api.system.directories["multi_room"]
        await directory.call_room(doomed, "a message no room understands")  # type: ignore[arg-type]
        assert (await api.post("get_pushers", {"roomID": doomed})).code == 3
        assert (await api.post("pusher_heartbeat", {"roomID": doomed, "userID": "alice"})).code == 3
        assert directory.closes == {CloseReason.CRASHED: 1}
        assert (await api.post("add_pusher", joining("carol", sibling))).code == 0
        await eventually(lambda: fake.calls_for(doomed)[-1:] == ["destroy_group"])
        assert sibling in fake.groups and doomed not in fake.groups
    crash = [line for line in log_lines if f"root/multi_room/{doomed} | room crashed" in line]
    assert crash and "Traceback" in crash[0] and "TypeError" in crash[0]
    assert any(f"root/multi_room/{doomed} | room closed reason=crashed" in line for line in log_lines)


async def test_a_crashing_directory_is_restarted_and_keeps_its_rooms(
    log_lines: list[str], autojump_clock: trio.abc.Clock
) -> None:
    from tests.conftest import open_roomd

    async with open_roomd(make_settings()) as api:
        kept = (await api.post("create_room", {**member_fields("alice"), "roomName": "a"})).body["roomID"]
        directory = api.system.directories["multi_room"]
        for _ in range(3):
            assert directory.mailbox.cast("not a creation request")  # type: ignore[arg-type]
        await trio.sleep(5)
        created = await api.post("create_room", {**member_fields("bob"), "roomName": "b"})
        assert created.code == 0
        assert (await api.post("pusher_heartbeat", {"roomID": kept, "userID": "alice"})).code == 0
        assert len((await api.post("get_room_list")).body["rooms"]) == 2
    restarts = [
        line for line in log_lines if line.startswith("root/multi_room | directory multi_room crashed; restarting")
    ]
    assert len(restarts) == 3 and "Traceback" in restarts[0]


class FlakyImActor(ImActor):
    """An IM actor whose first `failures` delivery attempts raise, as a bug would."""

    failures = 0

    async def _attempt(self, request: ImRequest, timeout: float) -> Judgement:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("injected fault")
        return await super()._attempt(request, timeout)


async def _flaky_im(nursery: trio.Nursery, failures: int) -> tuple[FlakyImActor, FakeIm]:
    fake = await start_fake_im(nursery, FakeIm(IM_SDK_APP_ID, "admin", secret_key=IM_SECRET))
    settings = make_settings(
        ROOMD_IM__SDK_APP_ID=str(IM_SDK_APP_ID), ROOMD_IM__SECRET_KEY=IM_SECRET, ROOMD_IM__BASE_URL=fake.base_url
    )
    actor = FlakyImActor(settings.im, HmacUserSigner(IM_SDK_APP_ID, IM_SECRET), path="root/im", wall_clock=time.time)
    actor.failures = failures
    await nursery.start(actor.run)
    return actor, fake


async def test_a_crashing_im_courier_is_restarted_and_loses_no_call(log_lines: list[str]) -> None:
    async with trio.open_nursery() as nursery:
        actor, fake = await _flaky_im(nursery, failures=1)
        fake.groups["g1"] = "g1"
        actor.notify_pusher_change("g1")
        actor.destroy_group("g1")
        await eventually(lambda: actor.queue_depth == 0)
        assert fake.calls_for("g1") == ["send_group_system_notification", "destroy_group"]
        nursery.cancel_scope.cancel()
    assert any("root/im | IM courier g1 crashed; restarting" in line and "injected fault" in line for line in log_lines)


async def test_a_crashing_im_actor_is_restarted_with_its_queue(log_lines: list[str]) -> None:
    async with trio.open_nursery() as nursery:
        actor, fake = await _flaky_im(nursery, failures=6)  # the courier's supervisor gives up after 5
        fake.groups["g2"] = "g2"
        actor.notify_pusher_change("g2")
        await eventually(lambda: actor.queue_depth == 0, within=30)
        assert fake.calls_for("g2") == ["send_group_system_notification"]
        assert await actor.create_group("g3", "g3") is None  # and it keeps working
        nursery.cancel_scope.cancel()
    assert any("IM courier g2 crashed 6 times" in line for line in log_lines)
    assert any("root/im | IM actor crashed; restarting" in line for line in log_lines)
