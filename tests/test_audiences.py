"""Audiences: viewers listed by the room actor, in joining order, with an exact count; gone with their room,
kept across restarts, undone with a failed write, never members."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from loguru import logger

import roomd.actors.im as im_module
from roomd.actors.directory import Directory
from roomd.actors.messages import (
    AddAudience,
    Audience,
    AudienceSaved,
    Change,
    CustomFieldSaved,
    Destroy,
    GetAudiences,
    GetRoom,
    Heartbeat,
    RemoveAudience,
    RoomSaved,
)
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.store import SqliteStore
from roomd.actors.system import open_room_system
from roomd.config import Settings
from tests.actor_helpers import create, directory_of, members_of, persisted
from tests.bodies import joining
from tests.conftest import Api, Reply, eventually, make_settings, open_im_world, open_roomd
from tests.test_operations import scrape, value
from tests.token_calls import call_as, logged_in

LIVE = "live_room"
NOTIFY = "send_group_system_notification"


def user_info(name: str) -> str:
    """userInfo as the Windows client writes it: a JSON string with a trailing newline."""
    return json.dumps({"userName": name, "userAvatar": f"https://a.test/{name}.png"}, ensure_ascii=False) + "\n"


async def open_live_room(api: Api, room_id: str = "r-live", anchor: str = "anchor") -> str:
    assert (await api.post("add_pusher", joining(anchor, room_id), kind=LIVE)).code == 0
    return room_id


async def add(api: Api, room_id: str, user_id: str, info: str | None = None) -> Reply:
    body = {"roomID": room_id, "userID": user_id, "userInfo": user_info(user_id) if info is None else info}
    return await api.post("add_audience", body, kind=LIVE)


async def delete(api: Api, room_id: str, user_id: str) -> Reply:
    return await api.post("delete_audience", {"roomID": room_id, "userID": user_id}, kind=LIVE)


async def audiences_of(api: Api, room_id: str) -> list[str]:
    """The audience IDs get_audiences lists, checking that its count is exactly their number."""
    reply = await api.post("get_audiences", {"roomID": room_id}, kind=LIVE)
    assert reply.code == 0, reply.body
    assert reply.body["audienceCount"] == len(reply.body["audiences"])
    return [a["userID"] for a in reply.body["audiences"]]


def live_settings(**changes: Any) -> Settings:
    """Default settings, persistence off, with `live_room` changed as given."""
    base = Settings()
    kinds = {**base.kinds, LIVE: dataclasses.replace(base.kinds[LIVE], **changes)}
    return dataclasses.replace(base, kinds=kinds, server=dataclasses.replace(base.server, persist=False))


def persistent(tmp_path: Path) -> Settings:
    return persisted(live_settings(), tmp_path)


def live_directory(system: Any) -> Directory:
    return directory_of(system, LIVE)


async def audience_ids(directory: Directory, room_id: str) -> list[str] | None:
    reply = await directory.call_room(room_id, GetAudiences())
    return [a.user_id for a in reply.value] if isinstance(reply, Ok) else None


# --- over HTTP ----------------------------------------------------------------------


async def test_audiences_are_listed_in_joining_order_with_their_user_info_kept_verbatim(api: Api) -> None:
    room = await open_live_room(api)
    for user_id in ("bob", "carol", "dave"):
        assert (await add(api, room, user_id)).code == 0
    renamed = user_info("Bob 鲍勃")
    assert (await add(api, room, "bob", renamed)).code == 0  # listed already: updated in place
    listed = (await api.post("get_audiences", {"roomID": room}, kind=LIVE)).body
    assert listed["audienceCount"] == 3
    assert listed["audiences"] == [
        {"userID": "bob", "userInfo": renamed},
        {"userID": "carol", "userInfo": user_info("carol")},
        {"userID": "dave", "userInfo": user_info("dave")},
    ]
    pushers = (await api.post("get_pushers", {"roomID": room}, kind=LIVE)).body
    assert pushers["audienceCount"] == 3 and [p["userID"] for p in pushers["pushers"]] == ["anchor"]
    [listing] = (await api.post("get_room_list", kind=LIVE)).body["rooms"]
    assert (listing["audienceCount"], listing["memberCount"]) == (3, 1)  # audiences are not members


async def test_the_count_is_exact_under_duplicates_refusals_and_unknown_deletes() -> None:
    async with open_roomd(make_settings(ROOMD_KINDS__LIVE_ROOM__MAX_AUDIENCES="2")) as api:
        room = await open_live_room(api)
        assert (await add(api, room, "a")).code == 0
        assert (await add(api, room, "a")).code == 0
        assert await audiences_of(api, room) == ["a"]
        assert (await add(api, room, "b")).code == 0
        full = await add(api, room, "c")
        assert (full.code, full.body["message"]) == (5001, "超出房间人数上限")
        assert full.body["detail"] == (
            f"room {room} already lists 2 audiences, the most allowed (kinds.live_room.max_audiences)"
        )
        assert (await add(api, room, "b", "new info")).code == 0  # a listed audience is no newcomer
        assert await audiences_of(api, room) == ["a", "b"]
        assert (await delete(api, room, "nobody")).code == 0
        assert await audiences_of(api, room) == ["a", "b"]
        for _ in range(2):
            assert (await delete(api, room, "a")).code == 0
        assert await audiences_of(api, room) == ["b"]
        assert (await add(api, room, "c")).code == 0
        assert await audiences_of(api, room) == ["b", "c"]
        for _ in range(3):
            await delete(api, room, "b")
            await delete(api, room, "c")
        assert await audiences_of(api, room) == []
        assert (await api.post("get_pushers", {"roomID": room}, kind=LIVE)).body["audienceCount"] == 0


async def test_bad_audience_requests_are_code_1_and_unknown_rooms_code_3(api: Api) -> None:
    room = await open_live_room(api)
    too_long = "é" * 512 + "x"  # 1025 bytes of UTF-8 in 513 characters
    for body, detail in (
        ({"roomID": room, "userID": "bob"}, "userInfo is required"),
        ({"roomID": room, "userID": "bob", "userInfo": {"userName": "Bob"}}, "userInfo must be a string"),
        (
            {"roomID": room, "userID": "bob", "userInfo": too_long},
            "userInfo is 1025 bytes of UTF-8; at most 1024 are allowed",
        ),
        (
            {"roomID": room, "userID": "b b", "userInfo": ""},
            "userID must be printable, without whitespace or any of / ? # &",
        ),
    ):
        refused = await api.post("add_audience", body, kind=LIVE)
        assert (refused.code, refused.body["detail"]) == (1, detail)
    assert await audiences_of(api, room) == []
    assert (await add(api, room, "bob", "é" * 512)).code == 0  # exactly 1024 bytes
    for endpoint, body in (
        ("add_audience", {"roomID": "nope", "userID": "bob", "userInfo": ""}),
        ("delete_audience", {"roomID": "nope", "userID": "bob"}),
        ("get_audiences", {"roomID": "nope"}),
    ):
        missing = await api.post(endpoint, body, kind=LIVE)
        assert (missing.code, missing.body["detail"]) == (3, "room nope does not exist"), endpoint


async def test_audience_endpoints_are_off_where_max_audiences_is_0(api: Api) -> None:
    for kind in ("multi_room", "double_room"):
        room = (await api.post("add_pusher", joining("alice", f"r-{kind}"), kind=kind)).body["roomID"]
        for endpoint, body in (
            ("add_audience", {"roomID": room, "userID": "bob", "userInfo": ""}),
            ("delete_audience", {"roomID": room, "userID": "bob"}),
            ("get_audiences", {"roomID": room}),
        ):
            off = await api.post(endpoint, body, kind=kind)
            assert off.code == 1, (kind, endpoint)
            assert off.body["detail"] == f"{kind} rooms have no audiences (kinds.{kind}.max_audiences is 0)"
        pushers = (await api.post("get_pushers", {"roomID": room}, kind=kind)).body
        assert (pushers["audienceCount"], pushers["custom"]) == (0, "{}")


async def test_a_closed_room_drops_its_audiences_and_logs_each_one_gone(api: Api) -> None:
    room = await open_live_room(api)
    for user_id in ("bob", "carol"):
        await add(api, room, user_id)
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="INFO")
    try:
        assert (await api.post("destroy_room", {"roomID": room, "userID": "anchor"}, kind=LIVE)).code == 0
    finally:
        logger.remove(sink)
    gone = [line for line in lines if line.startswith("audience left")]
    assert gone == [f"audience left user={u} reason=room_closed audiences=0/30" for u in ("bob", "carol")]
    assert (await api.post("get_audiences", {"roomID": room}, kind=LIVE)).code == 3
    await open_live_room(api, room)  # the same roomID again: a new room, without the old audiences
    assert await audiences_of(api, room) == []


async def test_audiences_act_for_themselves_in_token_mode() -> None:
    settings = make_settings(ROOMD_AUTH__MODE="token", ROOMD_AUTH__TOKEN_SECRET="audiences-test-secret")
    async with open_roomd(settings) as api:
        anchor, viewer = await logged_in(api, 2, kind=LIVE)

        async def call(who: dict[str, str], endpoint: str, body: dict[str, Any]) -> Reply:
            return await call_as(api, who, LIVE, endpoint, body)

        assert (await call(anchor, "add_pusher", joining(anchor["userID"], "r-tok"))).code == 0
        as_other = await call(viewer, "add_audience", {"roomID": "r-tok", "userID": "mallory", "userInfo": ""})
        assert as_other.code == 7
        assert (
            await call(viewer, "add_audience", {"roomID": "r-tok", "userID": viewer["userID"], "userInfo": ""})
        ).code == 0
        listed = await call(anchor, "get_audiences", {"roomID": "r-tok"})
        assert [a["userID"] for a in listed.body["audiences"]] == [viewer["userID"]]
        assert (await api.post("get_audiences", {"roomID": "r-tok"}, kind=LIVE)).code == 7  # no token


async def test_metrics_and_the_actor_tree_count_audiences(api: Api) -> None:
    first, second = await open_live_room(api, "r-1", "a1"), await open_live_room(api, "r-2", "a2")
    for room, user_id in ((first, "bob"), (first, "carol"), (second, "dave")):
        await add(api, room, user_id)
    await delete(api, first, "nobody")
    m = await scrape(api)
    assert value(m, "roomd_audiences", kind=LIVE) == 3
    assert value(m, "roomd_audiences", kind="multi_room") == 0
    tree = (await api.get("/debug/actors")).body["tree"]
    [live] = [d for d in tree["children"] if d["path"] == f"root/{LIVE}"]
    assert {node["path"]: node["audiences"] for node in live["children"]} == {
        f"root/{LIVE}/{first}": 2,
        f"root/{LIVE}/{second}": 1,
    }
    await api.post("destroy_room", {"roomID": first, "userID": "a1"}, kind=LIVE)
    assert value(await scrape(api), "roomd_audiences", kind=LIVE) == 1


async def test_audiences_joining_and_leaving_notify_the_im_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(im_module, "NOTIFY_INTERVAL", 0.01)
    async with open_im_world() as (api, fake):

        def notifications() -> int:
            return fake.calls_for("r-im").count(NOTIFY)

        await open_live_room(api, "r-im")
        await eventually(lambda: notifications() == 1, within=5)  # the anchor's join
        assert (await add(api, "r-im", "bob")).code == 0
        await eventually(lambda: notifications() == 2, within=5)
        assert (await add(api, "r-im", "bob", "renamed")).code == 0  # a changed userInfo: clients re-read
        await eventually(lambda: notifications() == 3, within=5)
        assert (await delete(api, "r-im", "bob")).code == 0
        await eventually(lambda: notifications() == 4, within=5)
        assert (await add(api, "r-im", "carol")).code == 0
        await eventually(lambda: notifications() == 5, within=5)
        await add(api, "r-im", "carol")  # nothing changed: nobody is told
        await delete(api, "r-im", "bob")
        await trio.sleep(0.3)
        assert notifications() == 5


# --- the room actor -------------------------------------------------------------------


async def test_audiences_neither_heartbeat_nor_keep_a_room_open(autojump_clock: trio.abc.Clock) -> None:
    async with open_room_system(live_settings()) as system:
        directory = live_directory(system)
        waiting = await create(directory, "erin", join=False)
        assert await directory.call_room(waiting, AddAudience(Audience("bob", ""))) == Ok(None)
        room = await create(directory, "anchor")
        assert await directory.call_room(room, AddAudience(Audience("carol", ""))) == Ok(None)
        assert directory.stats().audiences == 2 and directory.stats().members == 1
        for _ in range(12):  # a minute: the anchor heartbeats, carol never does and stays listed
            await trio.sleep(5)
            assert await directory.call_room(room, Heartbeat("anchor")) == Ok(None)
        assert await audience_ids(directory, room) == ["carol"]
        assert await directory.call_room(room, Heartbeat("carol")) == Refused(
            DomainError.NOT_MEMBER, f"carol is not a member of room {room}"
        )
        assert await audience_ids(directory, waiting) is None  # idle after 30 s: its audience kept it not
        snapshot = (await directory.call_room(room, GetRoom())).value  # type: ignore[union-attr]
        assert [m.user_id for m in snapshot.members] == ["anchor"] and snapshot.audience_count == 1
        await trio.sleep(20.5)  # the anchor is silent: the room closes, carol with it
        assert await members_of(directory, room) is None
        assert directory.stats().audiences == 0


async def test_a_failed_write_undoes_an_audience_change(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = live_directory(system)
        store = system.store
        assert isinstance(store, SqliteStore)
        room = await create(directory, "anchor")
        assert await directory.call_room(room, AddAudience(Audience("bob", "b"))) == Ok(None)
        for change in (AddAudience(Audience("carol", "c")), AddAudience(Audience("bob", "b2")), RemoveAudience("bob")):
            store.inject_failures = 1
            refused = await directory.call_room(room, change)
            assert isinstance(refused, Refused) and refused.error is DomainError.BUSY, change
        listed = await directory.call_room(room, GetAudiences())
        assert listed == Ok((Audience("bob", "b"),))
        assert [r.audience_count for r in directory.page(0, 10)] == [1] and directory.stats().audiences == 1
        assert await directory.call_room(room, AddAudience(Audience("carol", "c"))) == Ok(None)
    async with open_room_system(persistent(tmp_path)) as system:
        listed = await live_directory(system).call_room(room, GetAudiences())
        assert listed == Ok((Audience("bob", "b"), Audience("carol", "c")))


async def test_audiences_come_back_after_a_restart_and_go_with_their_room(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = live_directory(system)
        kept = await create(directory, "anchor")
        for user_id in ("bob", "carol", "dave"):
            await directory.call_room(kept, AddAudience(Audience(user_id, user_info(user_id))))
        await directory.call_room(kept, AddAudience(Audience("carol", "carol again")))
        await directory.call_room(kept, RemoveAudience("bob"))
        closed = await create(directory, "erin")
        await directory.call_room(closed, AddAudience(Audience("frank", "")))
        assert await directory.call_room(closed, Destroy("erin")) == Ok(None)
        waiting = await create(directory, "gina", join=False)
        await directory.call_room(waiting, AddAudience(Audience("hank", "")))
    async with open_room_system(persistent(tmp_path)) as system:
        directory = live_directory(system)
        listed = await directory.call_room(kept, GetAudiences())
        assert listed == Ok((Audience("carol", "carol again"), Audience("dave", user_info("dave"))))
        assert await audience_ids(directory, closed) is None
        assert await audience_ids(directory, waiting) == ["hank"]
        assert directory.stats().audiences == 3
        store = system.store
        assert isinstance(store, SqliteStore)
        assert {saved.room_id: len(saved.audiences) for saved in store.load(LIVE)} == {kept: 2, waiting: 1}


async def test_a_room_made_anew_keeps_no_audiences_or_custom_fields_left_in_the_store(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = live_directory(system)
        store = system.store
        assert isinstance(store, SqliteStore)
        # what a close that was never written leaves: a room with its audiences and fields, none in memory
        left: list[Change] = [
            RoomSaved(LIVE, "x", "alice", "a"),
            AudienceSaved(LIVE, "x", Audience("bob", "")),
            CustomFieldSaved(LIVE, "x", "likes", 7),
        ]
        assert await store.write(left) is None
        assert await create(directory, "carol", room_id="x") == "x"
        snapshot = (await directory.call_room("x", GetRoom())).value  # type: ignore[union-attr]
        assert (snapshot.audience_count, snapshot.custom) == (0, ())
        [saved] = store.load(LIVE)
        assert (saved.audiences, saved.custom) == ((), ())
