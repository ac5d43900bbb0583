"""Hostile and malformed input over HTTP: each gets a clear error and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bodies import joining
from tests.conftest import Api

ROOM = "room_fixed"


def pusher(user_id: str, **extra: Any) -> dict[str, Any]:
    return joining(user_id, ROOM, **extra)


async def state_of(api: Api) -> Any:
    """Everything a client could observe: every kind's listing and the fixed room's pushers."""
    listings = {
        kind: (await api.post("get_room_list", {"cnt": 100}, kind=kind)).body["rooms"]
        for kind in api.system.directories
    }
    room = (await api.post("get_pushers", {"roomID": ROOM})).body
    counts = {kind: d.room_count for kind, d in api.system.directories.items()}
    return json.dumps([listings, room, counts], sort_keys=True)


@pytest.fixture
async def seeded(api: Api) -> Api:
    created = await api.post("create_room", {**pusher("alice"), "roomName": "r"})
    assert created.code == 0 and created.body["roomID"] == ROOM
    assert (await api.post("add_pusher", pusher("bob"))).code == 0
    return api


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("add_pusher", pusher("carol", userID=42), "userID must be a string"),
    ("add_pusher", pusher("carol", userID=None), "userID is required"),
    ("add_pusher", pusher("carol", userName={"a": 1}), "userName must be a string"),
    ("add_pusher", pusher("carol", roomID=["x"]), "roomID must be a string"),
    ("add_pusher", pusher("carol", pushURL=7), "pushURL must be a string"),
    ("add_pusher", pusher("carol", userID=""), "userID must not be empty"),
    ("add_pusher", pusher("carol", userID="x" * 65), "userID is longer than 64 characters"),
    ("add_pusher", pusher("carol", userID="a/b"), "userID must be printable, without whitespace or any of / ? # &"),
    ("add_pusher", pusher("carol", userID="a?b"), "userID must be printable, without whitespace or any of / ? # &"),
    ("add_pusher", pusher("carol", userID="a#b"), "userID must be printable, without whitespace or any of / ? # &"),
    ("add_pusher", pusher("carol", userID="a&b"), "userID must be printable, without whitespace or any of / ? # &"),
    ("add_pusher", pusher("carol", userID="a b"), "userID must be printable, without whitespace or any of / ? # &"),
    ("add_pusher", pusher("carol", userID="a\tb"), "userID must be printable, without whitespace or any of / ? # &"),
    ("add_pusher", pusher("carol", roomID=""), "roomID must not be empty"),
    ("add_pusher", pusher(".."), "userID must not be . or .."),
    ("add_pusher", pusher("carol", roomID="."), "roomID must not be . or .."),
    ("add_pusher", pusher("carol", userName="n" * 257), "userName is longer than 256 characters"),
    ("add_pusher", pusher("carol", userAvatar="a" * 1025), "userAvatar is longer than 1024 characters"),
    ("add_pusher", pusher("carol", pushURL=""), "pushURL must be an rtmp://, http:// or https:// URL"),
    ("add_pusher", pusher("carol", pushURL="ftp://x/live/s"), "pushURL must be an rtmp://, http:// or https:// URL"),
    ("add_pusher", pusher("carol", pushURL="rtmp://" + "h" * 2050), "pushURL is longer than 2048 characters"),
    ("add_pusher", {"roomID": ROOM, "userID": "carol"}, "userName is required"),
    ("add_pusher", {k: v for k, v in pusher("carol").items() if k != "pushURL"}, "pushURL is required"),
    ("delete_pusher", {"roomID": ROOM}, "userID is required"),
    ("delete_pusher", {"roomID": ROOM, "userID": 5}, "userID must be a string"),
    ("pusher_heartbeat", {"userID": "alice"}, "roomID is required"),
    ("destroy_room", {"roomID": ROOM, "userID": None}, "userID is required"),
    (
        "destroy_room",
        {"roomID": ROOM, "userID": "alice x"},
        "userID must be printable, without whitespace or any of / ? # &",
    ),
    ("get_pushers", {"roomID": 12}, "roomID must be a string"),
    ("create_room", {"userID": "carol"}, "roomInfo or roomName is required"),
    ("create_room", {"userID": "carol", "roomInfo": 3}, "roomInfo must be a string"),
    (
        "create_room",
        {"userID": "carol", "roomInfo": "a", "roomName": "b"},
        "roomInfo and roomName are the same value and must not differ",
    ),
    ("create_room", {"userID": "carol", "roomInfo": "i", "roomID": "x" * 65}, "roomID is longer than 64 characters"),
    ("create_room", {"userID": "carol", "roomName": "n", "pushURL": "rtmp://p/live/s"}, "userName is required"),
    ("get_push_url", {"userID": 1}, "userID must be a string"),
    (
        "get_im_login_info",
        {"userIDPrefix": "a/b"},
        "userIDPrefix must be printable, without whitespace or any of / ? # &",
    ),
    ("get_room_list", {"index": -1}, "index must be a non-negative integer"),
]


@pytest.mark.parametrize(("endpoint", "body", "detail"), BAD_BODIES)
async def test_bad_parameters_are_code_1_and_change_nothing(
    seeded: Api, endpoint: str, body: dict[str, Any], detail: str
) -> None:
    before = await state_of(seeded)
    reply = await seeded.post(endpoint, body)
    assert (reply.status, reply.code, reply.body["message"]) == (200, 1, "请求参数错误")
    assert reply.body["detail"] == detail
    assert await state_of(seeded) == before


@pytest.mark.parametrize("field", ["roomInfo", "roomName"])
async def test_room_info_over_1024_bytes_is_code_10(seeded: Api, field: str) -> None:
    before = await state_of(seeded)
    info = "é" * 512 + "x"  # 1025 bytes of UTF-8, 513 characters
    reply = await seeded.post("create_room", {"userID": "carol", field: info})
    assert reply.code == 10
    assert reply.body["message"] == "roomInfo 字符串字节长度不能超过1024字节"
    assert reply.body["detail"] == f"{field} is 1025 bytes of UTF-8; at most 1024 are allowed"
    on_join = await seeded.post("add_pusher", pusher("alice", roomInfo=info))
    assert on_join.code == 10
    assert await state_of(seeded) == before


async def test_exactly_1024_bytes_of_room_info_is_accepted(seeded: Api) -> None:
    reply = await seeded.post("create_room", {"userID": "carol", "roomInfo": "é" * 512})
    assert reply.code == 0


@pytest.mark.parametrize(
    ("data", "content_type", "detail"),
    [
        (b"{not json", "application/json", "request body is not valid JSON"),
        (b"userID=alice", "application/json", "request body is not valid JSON"),
        (b'["roomID", "userID"]', "application/json", "request body must be a JSON object, not an array"),
        (b'"roomID"', "text/plain", "request body must be a JSON object, not a string"),
        (b"\xff\xfe\x00", "application/json", "request body is not UTF-8"),
        (b"a=1&&=", "application/x-www-form-urlencoded", "request body is not valid form encoding"),
        (  # not U+FFFD in its place: a%FF and a%FE would be one userID
            b"roomID=room_fixed&userID=a%FF&userName=n&userAvatar=&pushURL=rtmp%3A%2F%2Fp%2Flive%2Fs",
            "application/x-www-form-urlencoded",
            "request body has percent-escapes that are not UTF-8",
        ),
        (
            b"userID=a%ED%A0%80",
            "application/x-www-form-urlencoded",
            "request body has percent-escapes that are not UTF-8",
        ),
    ],
)
async def test_unparseable_bodies_are_http_400(seeded: Api, data: bytes, content_type: str, detail: str) -> None:
    before = await state_of(seeded)
    reply = await seeded.raw("/weapp/multi_room/add_pusher", data, content_type)
    assert (reply.status, reply.code, reply.body["detail"]) == (400, 1, detail)
    assert await state_of(seeded) == before


@pytest.mark.parametrize(
    "path",
    [
        "/weapp/multi_room/get_room_list?userID=a%FF",
        "/weapp/utils/get_login_info?userID=a%ED%A0%80",  # a lone surrogate in UTF-8's shape
        "/debug/actors?limit=%FF",
    ],
)
async def test_a_query_whose_escapes_are_not_utf_8_is_http_400(seeded: Api, path: str) -> None:
    method = "GET" if path.startswith("/debug") else "POST"
    reply = await seeded.raw(path, b"" if method == "GET" else b"{}", "application/json", method=method)
    assert (reply.status, reply.code, reply.body["detail"]) == (
        400,
        1,
        "the query has percent-escapes that are not UTF-8",
    )


async def test_body_over_the_limit_is_http_413(seeded: Api) -> None:
    before = await state_of(seeded)
    body = json.dumps(pusher("carol", userAvatar="a" * (1024 * 1024))).encode()
    reply = await seeded.raw("/weapp/multi_room/add_pusher", body, "application/json")
    assert (reply.status, reply.code) == (413, 1)
    assert reply.body["detail"] == "request body is larger than 65536 bytes"
    assert await state_of(seeded) == before


async def test_form_encoded_body_is_accepted(seeded: Api) -> None:
    form = "roomID=room_fixed&userID=carol&userName=Carol&userAvatar=&pushURL=rtmp%3A%2F%2Fp.test%2Flive%2Fs"
    reply = await seeded.raw("/weapp/multi_room/add_pusher", form.encode(), "application/x-www-form-urlencoded")
    assert reply.code == 0
    pushers = (await seeded.post("get_pushers", {"roomID": ROOM})).body["pushers"]
    assert [p["userID"] for p in pushers] == ["alice", "bob", "carol"]


async def test_json_sent_as_a_form_is_read_as_json(seeded: Api) -> None:
    """What `curl -d '{...}'` sends: JSON labelled as a form."""
    body = b"  " + json.dumps(pusher("carol")).encode()
    reply = await seeded.raw("/weapp/multi_room/add_pusher", body, "application/x-www-form-urlencoded")
    assert reply.code == 0
    pushers = (await seeded.post("get_pushers", {"roomID": ROOM})).body["pushers"]
    assert [p["userID"] for p in pushers] == ["alice", "bob", "carol"]
    broken = await seeded.raw("/weapp/multi_room/add_pusher", b'{"roomID":', "application/x-www-form-urlencoded")
    assert (broken.status, broken.code, broken.body["detail"]) == (400, 1, "request body is not valid JSON")


async def test_json_sent_as_text_plain_is_accepted(seeded: Api) -> None:
    body = json.dumps(pusher("carol")).encode()
    reply = await seeded.raw("/weapp/multi_room/add_pusher", body, "text/plain;charset=UTF-8")
    assert reply.code == 0
    pushers = (await seeded.post("get_pushers", {"roomID": ROOM})).body["pushers"]
    assert [p["userID"] for p in pushers] == ["alice", "bob", "carol"]


@pytest.mark.parametrize(
    "path", ["/nope", "/weapp/multi_room/no_such_endpoint", "/weapp/no_such_kind/get_pushers", "/weapp/multi_room"]
)
async def test_unknown_path_is_http_404_with_the_envelope(seeded: Api, path: str) -> None:
    before = await state_of(seeded)
    reply = await seeded.raw(path, b"{}", "application/json")
    assert reply.status == 404 and reply.code == 1 and reply.body["message"] == "请求参数错误"
    assert path in reply.body["detail"]
    assert await state_of(seeded) == before


async def test_wrong_method_is_http_405_with_the_envelope(seeded: Api) -> None:
    reply = await seeded.get("/weapp/multi_room/get_pushers")
    assert reply.status == 405 and reply.code == 1
    assert reply.body["detail"] == "/weapp/multi_room/get_pushers does not accept GET"


async def test_draining_server_answers_503_code_12(seeded: Api) -> None:
    seeded.ctx.draining = True
    reply = await seeded.post("get_room_list")
    assert (reply.status, reply.code, reply.body["message"]) == (503, 12, "服务器繁忙，请稍后重试")
    assert (await seeded.get("/healthz")).status == 200
    assert (await seeded.get("/readyz")).status == 503
