"""Concurrent requests on one room are applied one at a time: no overshoot, no double rooms."""

from __future__ import annotations

import trio

from tests.bodies import joining
from tests.conftest import Api, Reply, make_settings, open_roomd


async def gather(*calls: object) -> list[Reply]:
    replies: list[Reply] = []

    async with trio.open_nursery() as nursery:
        for call in calls:

            async def run(call: object = call) -> None:
                replies.append(await call)  # type: ignore[misc]

            nursery.start_soon(run)
    return replies


async def test_fifty_simultaneous_joins_fill_six_places(api: Api) -> None:
    room_id = (await api.post("create_room", {"userID": "host", "roomInfo": "r"})).body["roomID"]
    replies = await gather(*(api.post("add_pusher", joining(f"u{i}", room_id)) for i in range(50)))
    codes = sorted(r.code for r in replies)
    assert codes.count(0) == 6 and codes.count(5001) == 44 and len(codes) == 50
    pushers = (await api.post("get_pushers", {"roomID": room_id})).body["pushers"]
    assert len(pushers) == 6
    joined = {p["userID"] for p in pushers}
    winners = {f"u{i}" for i in range(50)}
    assert joined <= winners
    listed = (await api.post("get_room_list")).body["rooms"]
    assert listed[0]["memberCount"] == 6


async def test_two_simultaneous_creates_of_one_room_id_give_one_room(api: Api) -> None:
    replies = await gather(
        api.post("create_room", {"userID": "a", "roomInfo": "first", "roomID": "same"}),
        api.post("create_room", {"userID": "b", "roomInfo": "second", "roomID": "same"}),
    )
    assert sorted(r.code for r in replies) == [0, 11]
    assert api.system.directories["multi_room"].room_count == 1


async def test_joins_leaves_and_heartbeats_racing_a_destroy_leave_no_half_closed_room() -> None:
    # with create_on_join a join after the destroy would make the room again: this is about the close
    async with open_roomd(make_settings(ROOMD_KINDS__MULTI_ROOM__CREATE_ON_JOIN="false")) as api:
        await _race_destroys(api)


async def _race_destroys(api: Api) -> None:
    for round_ in range(20):
        room_id = (await api.post("create_room", {**joining("host", f"race{round_}"), "roomInfo": "r"})).body["roomID"]
        assert (await api.post("add_pusher", joining("early", room_id))).code == 0
        calls = []
        for i in range(12):
            calls.append(api.post("add_pusher", joining(f"j{i}", room_id)))
            calls.append(api.post("pusher_heartbeat", {"roomID": room_id, "userID": "early"}))
            calls.append(api.post("delete_pusher", {"roomID": room_id, "userID": f"j{i - 1}"}))
            if i == round_ % 12:
                calls.append(api.post("destroy_room", {"roomID": room_id, "userID": "host"}))
        replies = await gather(*calls)
        assert {r.code for r in replies} <= {0, 3, 5, 5001}
        directory = api.system.directories["multi_room"]
        assert directory.room_count == 0 and directory.index.room_count == 0
        assert (await api.post("get_room_list")).body["rooms"] == []
        after = await api.post("add_pusher", joining("late", room_id))
        assert after.code == 3
