"""roomd and Tencent IM: a real fake IM server on loopback, reached through im.base_url."""

from __future__ import annotations

from typing import Any

import trio

from roomd.actors.messages import Join, Leave
from roomd.actors.replies import Ok
from tests.actor_helpers import member
from tests.bodies import joining, member_fields
from tests.conftest import IM_SDK_APP_ID, Api, eventually, open_im_world

NOTIFY = '{"cmd":"notifyPusherChange","data":""}'


def ordered_as_a_room_life(calls: list[str]) -> bool:
    """create_group first, destroy_group last, only notifications between."""
    return (
        len(calls) >= 2
        and calls[0] == "create_group"
        and calls[-1] == "destroy_group"
        and all(c == "send_group_system_notification" for c in calls[1:-1])
    )


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
    assert create.api == "create_group"
    assert create.body == {
        "Owner_Account": "admin",
        "Type": "AVChatRoom",
        "GroupId": room_id,
        "Name": "一个很长的房间名字，",  # 30 bytes, cut between characters
    }
    assert notify.api == "send_group_system_notification"
    assert notify.body == {"GroupId": room_id, "Content": NOTIFY}
    assert destroy.api == "destroy_group" and destroy.body == {"GroupId": room_id}
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
        await eventually(lambda: all(fake.calls_for(r)[-1:] == ["destroy_group"] for r in rooms))
    for room in rooms:
        assert ordered_as_a_room_life(fake.calls_for(room)), (room, fake.calls_for(room))
    assert fake.calls_for(idle) == ["create_group", "destroy_group"]
    assert fake.calls_for(emptied).count("send_group_system_notification") >= 1
    assert fake.groups == {}


async def test_failing_create_group_leaves_no_room_and_answers_6() -> None:
    async with open_im_world() as (api, fake):
        fake.behave(mode="error_code", error_code=10004, only_api="create_group")
        reply = await api.post("create_room", {"userID": "alice", "roomInfo": "r", "roomID": "doomed"})
        assert reply.code == 6 and reply.body["message"] == "服务器内部错误"
        assert "ErrorCode 10004" in reply.body["detail"]
        assert api.system.directories["multi_room"].room_count == 0
        assert (await api.post("get_pushers", {"roomID": "doomed"})).code == 3
        fake.behave()  # IM is well again: the same roomID can be created
        assert (await api.post("create_room", {"userID": "alice", "roomInfo": "r", "roomID": "doomed"})).code == 0


async def test_create_group_that_never_answers_times_out_with_6_and_is_cleaned_up() -> None:
    async with open_im_world() as (api, fake):
        fake.behave(mode="hang", only_api="create_group")
        started = trio.current_time()
        reply = await api.post("create_room", {"userID": "alice", "roomInfo": "r", "roomID": "slow"})
        waited = trio.current_time() - started
        assert reply.code == 6 and waited < 1 + 0.5 + 0.5  # im.timeout, grace, scheduling slack
        assert api.system.directories["multi_room"].room_count == 0
        fake.behave()
        # in case the group came to exist after all, roomd destroys it
        await eventually(lambda: any(c.api == "destroy_group" and c.body["GroupId"] == "slow" for c in fake.calls))


async def test_transient_failures_are_retried() -> None:
    async with open_im_world() as (api, fake):
        fake.behave(mode="http_500", times=2)
        reply = await api.post("create_room", {"userID": "alice", "roomInfo": "r"})
        assert reply.code == 0
        assert [c.answered for c in fake.calls] == ["http 500", "http 500", "ok"]
        room_id = reply.body["roomID"]
        for mode, extra in (("close", {}), ("http_429", {}), ("error_code", {"error_code": 10002})):
            fake.behave(mode=mode, times=1, **extra)
            before = len(fake.calls)
            await api.post("add_pusher", joining(f"u_{mode}", room_id))
            await eventually(
                lambda: fake.calls[-1:] and fake.calls[-1].answered == "ok" and len(fake.calls) == before + 2
            )
        stats = api.system.im.stats  # type: ignore[attr-defined]
        await eventually(lambda: stats.outcomes[("send_group_system_notification", "ok")] == 3)
        assert stats.outcomes[("send_group_system_notification", "failed")] == 0


async def test_a_final_error_is_not_retried_and_is_counted() -> None:
    async with open_im_world() as (api, fake):
        room_id = (await api.post("create_room", {"userID": "alice", "roomInfo": "r"})).body["roomID"]
        fake.behave(mode="error_code", error_code=10007, only_api="send_group_system_notification")
        await api.post("add_pusher", joining("bob", room_id))
        await eventually(lambda: api.system.im.stats.outcomes[("send_group_system_notification", "failed")] == 1)  # type: ignore[attr-defined]
        assert [c.answered for c in fake.calls if c.api == "send_group_system_notification"] == ["10007"]


async def test_calls_give_up_after_max_attempts() -> None:
    async with open_im_world(ROOMD_IM__MAX_ATTEMPTS="3") as (api, fake):
        room_id = (await api.post("create_room", {"userID": "alice", "roomInfo": "r"})).body["roomID"]
        fake.behave(mode="http_500")
        await api.post("add_pusher", joining("bob", room_id))
        im = api.system.im
        await eventually(lambda: im.stats.outcomes[("send_group_system_notification", "failed")] == 1)  # type: ignore[attr-defined]
        assert [c.answered for c in fake.calls if c.api == "send_group_system_notification"] == ["http 500"] * 3
        assert im.queue_depth == 0  # type: ignore[attr-defined]


async def test_a_burst_of_changes_collapses_into_a_few_notifications() -> None:
    async with open_im_world() as (api, fake):
        directory = api.system.directories["multi_room"]
        rooms = []
        for i in range(50):
            seed_era = member_fields(f"c{i}")
            rooms.append((await api.post("create_room", {**seed_era, "roomName": "r"})).body["roomID"])
        im = api.system.im
        await eventually(lambda: im.queue_depth == 0)  # type: ignore[attr-defined]
        fake.calls.clear()
        started = trio.current_time()
        for n in range(10):  # 10 joins and 10 leaves in each of 50 rooms: 1,000 changes
            for room_id in rooms:
                assert isinstance(await directory.call_room(room_id, Join(member(f"m{n}"))), Ok)
            for room_id in rooms:
                assert isinstance(await directory.call_room(room_id, Leave(f"m{n}")), Ok)
        burst = trio.current_time() - started
        await eventually(lambda: im.queue_depth == 0)  # type: ignore[attr-defined]
        per_room = [len(fake.calls_for(r)) for r in rooms]
        assert all(c.api == "send_group_system_notification" for c in fake.calls)
    print(f"1,000 changes in {burst:.2f} s -> {sum(per_room)} notifications, at most {max(per_room)} per room")
    # the first change goes out at once, then at most one per NOTIFY_INTERVAL (0.5 s)
    assert max(per_room) <= 2 + int(burst / 0.5)
    assert min(per_room) >= 1


async def test_im_outage_does_not_slow_rooms_and_every_call_arrives_afterwards() -> None:
    env = {
        "ROOMD_IM__TIMEOUT": "2",
        "ROOMD_IM__RETRY_BACKOFF": "2",  # the default
        "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "300",  # outlive the outage without heartbeats
    }
    async with open_im_world(**env) as (api, fake):
        alice = member_fields("alice")
        room_id = (await api.post("create_room", {**alice, "roomName": "r1"})).body["roomID"]
        await api.post("create_room", {"userID": "bob", "roomInfo": "r2", "roomID": "second"})
        await api.post("add_pusher", joining("bob", "second"))
        await eventually(lambda: len(fake.calls) == 4)
        fake.calls.clear()

        fake.stop_listening()  # 5 s refusing connections, then 5 s hanging
        outage_started = trio.current_time()
        answered_at = []
        for n in range(5):
            for reply in (
                await api.post("add_pusher", joining(f"g{n}", room_id)),
                await api.post("pusher_heartbeat", {"roomID": room_id, "userID": "alice"}),
                await api.post("delete_pusher", {"roomID": room_id, "userID": f"g{n}"}),
                await api.post("add_pusher", joining(f"h{n}", "second")),
            ):
                assert reply.code == 0
                answered_at.append(trio.current_time() - outage_started)
        assert answered_at[-1] < 1.0  # nothing above waited for IM
        during = await api.post("create_room", {"userID": "carol", "roomInfo": "r3", "roomID": "third"})
        assert during.code == 6  # only create_room waits, up to im.timeout
        await trio.sleep_until(outage_started + 5)
        fake.behave(mode="hang")
        await fake.start_listening()
        await trio.sleep_until(outage_started + 10)
        fake.behave()

        await eventually(lambda: api.system.im.queue_depth == 0, within=60)  # type: ignore[attr-defined]
        delivered = {r: fake.calls_for(r) for r in (room_id, "second")}
        calls_when_done = len(fake.calls)
        await trio.sleep(3)
        assert len(fake.calls) == calls_when_done  # nothing is retried forever
    # every change during the outage is reported, collapsed: one notification per group
    assert delivered == {room_id: ["send_group_system_notification"], "second": ["send_group_system_notification"]}
    assert api.system.im.stats.outcomes[("send_group_system_notification", "failed")] == 0  # type: ignore[attr-defined]
    assert "third" not in fake.groups


async def test_im_not_configured_makes_no_calls(api: Api) -> None:
    alice = member_fields("alice")
    reply = await api.post("create_room", {**alice, "roomName": "r"})
    assert reply.code == 0
    assert api.system.im.skipped == 2  # type: ignore[attr-defined]  # create_group, notification


async def test_im_faults_during_churn_lose_no_call() -> None:
    env = {"ROOMD_IM__MAX_ATTEMPTS": "10", "ROOMD_IM__TIMEOUT": "2"}
    async with open_im_world(**env) as (api, fake):
        rooms = []
        for i in range(5):
            created = await api.post("create_room", {**member_fields(f"c{i}"), "roomName": f"r{i}"})
            assert created.code == 0
            rooms.append(created.body["roomID"])
        last_change: dict[str, float] = {}
        destroyed: set[str] = set()

        async def churn(room_id: str, n: int) -> None:
            for step in range(12):
                user = f"m{n}_{step % 3}"
                if step % 2 == 0:
                    reply = await api.post("add_pusher", joining(user, room_id))
                else:
                    reply = await api.post("delete_pusher", {"roomID": room_id, "userID": f"m{n}_{(step - 1) % 3}"})
                assert reply.code == 0
                last_change[room_id] = trio.current_time()
                await trio.sleep(0.2)
            if n == 4:  # one room is destroyed while IM misbehaves
                assert (await api.post("destroy_room", {"roomID": room_id, "userID": f"c{n}"})).code == 0
                destroyed.add(room_id)

        async def misbehave() -> None:
            for mode in ("http_500", "close", "ok", "error_code", "refuse", "http_429", "ok"):
                if mode == "refuse":
                    fake.stop_listening()
                    await trio.sleep(0.5)
                    await fake.start_listening()
                    continue
                fake.behave(mode=mode, error_code=10002)
                await trio.sleep(0.5)
            fake.behave()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(misbehave)
            for n, room_id in enumerate(rooms):
                nursery.start_soon(churn, room_id, n)
        im = api.system.im
        await eventually(lambda: im.queue_depth == 0, within=60)  # type: ignore[attr-defined]
        assert im.stats.outcomes[("send_group_system_notification", "failed")] == 0  # type: ignore[attr-defined]
        assert im.stats.outcomes[("destroy_group", "failed")] == 0  # type: ignore[attr-defined]
        assert set(fake.groups) == set(rooms) - destroyed
        for room_id in set(rooms) - destroyed:
            delivered = [
                c.at
                for c in fake.calls
                if c.body.get("GroupId") == room_id and c.api == "send_group_system_notification" and c.answered == "ok"
            ]
            # the room's last change reached its group: a notification went out after it
            assert delivered and max(delivered) >= last_change[room_id], room_id
        assert any(c.answered != "ok" for c in fake.calls)  # the faults did happen
