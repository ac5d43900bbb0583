"""Custom room fields: set, inc and dec, answered as a JSON-encoded string; limits; every kind; undone with a
failed write, kept across restarts; in token mode set by members only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from roomd.actors.directory import Directory
from roomd.actors.messages import CustomOperation, Destroy, GetRoom, RoomSnapshot, SetCustomField
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.store import SqliteStore
from roomd.actors.system import open_room_system
from roomd.config import Settings
from tests.actor_helpers import create, directory_of, persisted
from tests.bodies import joining
from tests.conftest import Api, Reply, make_settings, open_roomd
from tests.token_calls import call_as, logged_in

LIVE = "live_room"
INC, DEC, SET = CustomOperation.INC, CustomOperation.DEC, CustomOperation.SET


def as_json(fields: dict[str, Any]) -> str:
    """`custom` as the later server wrote it: JSON.stringify of the fields."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


async def open_live_room(api: Api, room_id: str = "r-live", *, kind: str = LIVE) -> str:
    assert (await api.post("add_pusher", joining("anchor", room_id), kind=kind)).code == 0
    return room_id


async def set_field(api: Api, room_id: str, name: str, operation: str, *, kind: str = LIVE, **more: Any) -> Reply:
    body = {"roomID": room_id, "fieldName": name, "operation": operation, **more}
    return await api.post("set_custom_field", body, kind=kind)


async def custom_of(api: Api, room_id: str, *, kind: str = LIVE) -> str:
    reply = await api.post("get_custom_info", {"roomID": room_id}, kind=kind)
    assert reply.code == 0, reply.body
    custom: str = reply.body["custom"]
    return custom


# --- over HTTP ----------------------------------------------------------------------


async def test_set_stores_the_value_and_custom_is_answered_as_a_json_encoded_string(api: Api) -> None:
    room = await open_live_room(api)
    assert await custom_of(api, room) == "{}"
    title = 'Hello 世界 "quoted"\n'
    first = await set_field(api, room, "title", "set", value=title)
    assert (first.code, first.body["custom"]) == (0, as_json({"title": title}))
    assert json.loads(first.body["custom"]) == {"title": title}
    assert (await set_field(api, room, "mood", "set", value="")).code == 0  # an empty string is a value
    assert (await set_field(api, room, "title", "set", value="Again")).code == 0  # replaced, keeps its place
    expected = as_json({"title": "Again", "mood": ""})
    assert await custom_of(api, room) == expected
    assert (await api.post("get_pushers", {"roomID": room}, kind=LIVE)).body["custom"] == expected
    [listed] = (await api.post("get_room_list", kind=LIVE)).body["rooms"]
    assert listed["custom"] == expected


async def test_inc_and_dec_count_from_zero_or_from_the_integer_a_field_holds(api: Api) -> None:
    room = await open_live_room(api)
    for _ in range(3):
        assert (await set_field(api, room, "likes", "inc")).code == 0
    assert (await set_field(api, room, "likes", "dec")).body["custom"] == as_json({"likes": 2})
    assert (await set_field(api, room, "gifts", "dec")).code == 0  # missing: counts from 0
    await set_field(api, room, "score", "set", value="10")
    assert (await set_field(api, room, "score", "inc", value="ignored")).code == 0  # inc takes no value
    await set_field(api, room, "name", "set", value="abc")
    await set_field(api, room, "lead", "set", value="007")  # not how the integer 7 is written
    for name, held in (("name", "abc"), ("lead", "007")):
        refused = await set_field(api, room, name, "inc")
        assert refused.code == 1
        assert (
            refused.body["detail"]
            == f"custom field {name!r} holds {held!r}, not an integer; inc and dec work on integers"
        )
    assert await custom_of(api, room) == as_json({"likes": 2, "gifts": -1, "score": 11, "name": "abc", "lead": "007"})


async def test_inc_and_dec_stay_within_the_integers_every_client_reads_exactly(api: Api) -> None:
    room = await open_live_room(api)
    await set_field(api, room, "big", "set", value=str(2**53 - 1))
    await set_field(api, room, "low", "set", value=str(-(2**53 - 1)))
    for name, operation, sign in (("big", "inc", ""), ("low", "dec", "-")):
        refused = await set_field(api, room, name, operation)
        assert refused.code == 1
        assert refused.body["detail"] == (
            f"custom field {name!r} would pass {sign}9007199254740991, the largest integer every client reads exactly"
        )
    assert (await set_field(api, room, "big", "dec")).code == 0
    assert json.loads(await custom_of(api, room)) == {"big": 2**53 - 2, "low": str(-(2**53 - 1))}


async def test_bad_requests_are_code_1_and_change_nothing(api: Api) -> None:
    room = await open_live_room(api)
    await set_field(api, room, "kept", "set", value="v")
    for body, detail in (
        ({"fieldName": "t", "operation": "set"}, "value is required"),
        ({"fieldName": "t", "operation": "set", "value": None}, "value is required"),
        ({"fieldName": "t", "operation": "set", "value": 5}, "value must be a string"),
        (
            {"fieldName": "t", "operation": "set", "value": "é" * 512 + "x"},
            "value is 1025 bytes of UTF-8; at most 1024 are allowed",
        ),
        ({"fieldName": "t"}, "operation is required"),
        ({"fieldName": "t", "operation": "mul"}, "operation must be one of set, inc, dec"),
        ({"fieldName": "t", "operation": "SET", "value": "v"}, "operation must be one of set, inc, dec"),
        ({"operation": "inc"}, "fieldName is required"),
        ({"fieldName": "", "operation": "inc"}, "fieldName must not be empty"),
        ({"fieldName": "é" * 32 + "x", "operation": "inc"}, "fieldName is 65 bytes of UTF-8; at most 64 are allowed"),
    ):
        refused = await api.post("set_custom_field", {"roomID": room, **body}, kind=LIVE)
        assert (refused.code, refused.body["detail"]) == (1, detail), body
    assert await custom_of(api, room) == as_json({"kept": "v"})
    assert (await set_field(api, room, "é" * 32, "inc")).code == 0  # 64 bytes


async def test_a_room_holds_at_most_16_custom_fields(api: Api) -> None:
    room = await open_live_room(api)
    for i in range(16):
        assert (await set_field(api, room, f"f{i}", "inc")).code == 0
    refused = await set_field(api, room, "f16", "set", value="v")
    assert (refused.code, refused.body["detail"]) == (
        1,
        f"room {room} already has 16 custom fields, the most allowed; 'f16' is not one of them",
    )
    assert (await set_field(api, room, "f0", "set", value="still settable")).code == 0
    assert (await set_field(api, room, "f15", "inc")).code == 0
    fields = json.loads(await custom_of(api, room))
    assert len(fields) == 16 and fields["f0"] == "still settable" and fields["f15"] == 2


async def test_unknown_rooms_are_code_3(api: Api) -> None:
    for endpoint, body in (
        ("set_custom_field", {"roomID": "nope", "fieldName": "likes", "operation": "inc"}),
        ("get_custom_info", {"roomID": "nope"}),
    ):
        missing = await api.post(endpoint, body, kind=LIVE)
        assert (missing.code, missing.body["detail"]) == (3, "room nope does not exist"), endpoint


async def test_every_kind_has_custom_fields_and_anyone_sets_them_in_open_mode(api: Api) -> None:
    for kind in ("multi_room", "double_room", LIVE):
        room = await open_live_room(api, f"r-{kind}", kind=kind)
        by_stranger = await set_field(api, room, "likes", "inc", kind=kind, userID="stranger")
        assert (by_stranger.code, by_stranger.body["custom"]) == (0, '{"likes":1}'), kind
        assert await custom_of(api, room, kind=kind) == '{"likes":1}'


async def test_in_token_mode_only_members_set_custom_fields() -> None:
    settings = make_settings(ROOMD_AUTH__MODE="token", ROOMD_AUTH__TOKEN_SECRET="custom-fields-test-secret")
    async with open_roomd(settings) as api:
        anchor, viewer = await logged_in(api, 2, kind=LIVE)

        async def call(who: dict[str, str], endpoint: str, body: dict[str, Any]) -> Reply:
            return await call_as(api, who, LIVE, endpoint, body)

        assert (await call(anchor, "add_pusher", joining(anchor["userID"], "r-tok"))).code == 0
        likes = {"roomID": "r-tok", "fieldName": "likes", "operation": "inc"}
        refused = await call(viewer, "set_custom_field", likes)
        assert (refused.code, refused.body["message"]) == (5, "不是房间成员")
        assert (
            refused.body["detail"]
            == f"{viewer['userID']} is not a member of room r-tok; only members set its custom fields"
        )
        assert (await call(anchor, "set_custom_field", likes)).body["custom"] == '{"likes":1}'
        seen = await call(viewer, "get_custom_info", {"roomID": "r-tok"})  # reading needs no membership
        assert (seen.code, seen.body["custom"]) == (0, '{"likes":1}')
        assert (await api.post("set_custom_field", likes, kind=LIVE)).code == 7  # no token


# --- the room actor -------------------------------------------------------------------


def persistent(tmp_path: Path) -> Settings:
    return persisted(Settings(), tmp_path)


def live_directory(system: Any) -> Directory:
    return directory_of(system, LIVE)


async def custom_fields(directory: Directory, room_id: str) -> object:
    reply = await directory.call_room(room_id, GetRoom())
    assert isinstance(reply, Ok)
    snapshot: RoomSnapshot = reply.value
    return snapshot.custom


async def test_a_failed_write_undoes_a_custom_field_change(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = live_directory(system)
        store = system.store
        assert isinstance(store, SqliteStore)
        room = await create(directory, "anchor")
        assert await directory.call_room(room, SetCustomField("likes", INC)) == Ok((("likes", 1),))
        for change in (SetCustomField("likes", INC), SetCustomField("likes", SET, "x"), SetCustomField("new", DEC)):
            store.inject_failures = 1
            refused = await directory.call_room(room, change)
            assert isinstance(refused, Refused) and refused.error is DomainError.BUSY, change
            assert await custom_fields(directory, room) == (("likes", 1),)
        assert [r.custom for r in directory.page(0, 10)] == [(("likes", 1),)]  # the listing never saw them
        assert await directory.call_room(room, SetCustomField("likes", INC)) == Ok((("likes", 2),))
        assert await directory.call_room(room, SetCustomField("title", SET, "5")) == Ok((("likes", 2), ("title", "5")))
    async with open_room_system(persistent(tmp_path)) as system:
        assert await custom_fields(live_directory(system), room) == (("likes", 2), ("title", "5"))  # types kept


async def test_custom_fields_come_back_after_a_restart_and_go_with_their_room(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = live_directory(system)
        room = await create(directory, "anchor")
        for change in (SetCustomField("b", SET, "x"), SetCustomField("a", DEC), SetCustomField("b", SET, "y")):
            assert isinstance(await directory.call_room(room, change), Ok)
    async with open_room_system(persistent(tmp_path)) as system:
        directory = live_directory(system)
        assert await custom_fields(directory, room) == (("b", "y"), ("a", -1))  # in the order first set
        assert [r.custom for r in directory.page(0, 10)] == [(("b", "y"), ("a", -1))]
        assert await directory.call_room(room, Destroy("anchor")) == Ok(None)
    async with open_room_system(persistent(tmp_path)) as system:
        directory = live_directory(system)
        assert directory.room_count == 0
        await create(directory, "anchor", room_id=room)
        assert await custom_fields(directory, room) == ()
