"""The admin API: rooms listed with a cursor, looked into, closed, members removed, info and custom
fields changed, notifications sent; only with the admin key, and bad input changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from loguru import logger

from tests.bodies import joining, member_fields
from tests.cluster_helpers import open_nodes
from tests.conftest import Api, Reply, eventually, make_settings, open_im_world, open_roomd
from tests.fake_im import FakeIm
from tests.redis_server import RedisServer

KEY = "admin-key-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def admin(api: Api, method: str, path: str, body: Any = None, *, key: str | None = KEY) -> Reply:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    content = json.dumps(body).encode() if body is not None else None
    response = await api.http.request(method, f"/admin/v1/{path}", content=content, headers=headers)
    return Reply(response.status_code, response.json())


@pytest.fixture
async def world() -> AsyncIterator[tuple[Api, FakeIm]]:
    async with open_im_world(ROOMD_AUTH__ADMIN_KEY=KEY) as (api, fake):
        yield api, fake


@pytest.fixture
def lines() -> Any:
    records: list[str] = []
    sink = logger.add(lambda message: records.append(f"{message.record['extra'].get('actor')} {message}"))
    yield records
    logger.remove(sink)


async def test_without_a_key_the_admin_api_does_not_exist_and_with_one_it_needs_it() -> None:
    async with open_roomd(make_settings()) as keyless:
        assert (await admin(keyless, "GET", "rooms")).status == 404
        for method in ("GET", "POST"):  # nor does the console's sign-in
            assert (await keyless.http.request(method, "/console/login")).status_code == 404
    async with open_roomd(make_settings(ROOMD_AUTH__ADMIN_KEY=KEY)) as keyed:
        assert (await admin(keyed, "GET", "rooms", key=None)).status == 401
        refused = await admin(keyed, "GET", "rooms", key="wrong")
        assert (refused.status, refused.code) == (401, 7)
        assert (await admin(keyed, "GET", "rooms")).status == 200
        assert (await admin(keyed, "POST", "rooms")).status == 405
        assert (await admin(keyed, "GET", "nothing/here")).status == 404


async def metrics(api: Api, key: str) -> Reply:
    reply = await api.http.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    return Reply(reply.status_code, reply.json() if reply.status_code != 200 else {"code": 0})


async def test_wrong_keys_are_guesses_charged_to_the_login_limit_and_right_ones_are_free() -> None:
    limited = {"ROOMD_LIMITS__LOGIN_RATE_PER_ADDRESS": "0.001", "ROOMD_LIMITS__LOGIN_BURST_PER_ADDRESS": "3"}
    async with open_roomd(make_settings(ROOMD_AUTH__ADMIN_KEY=KEY, **limited)) as api:
        for _ in range(10):
            assert (await admin(api, "GET", "rooms")).status == 200
            assert (await metrics(api, KEY)).status == 200
        guesses = [
            await admin(api, "GET", "rooms", key="wrong"),
            await metrics(api, "wrong"),
            await metrics(api, KEY + "x"),
        ]
        assert [(g.status, g.code) for g in guesses] == [(401, 7)] * 3
        # the allowance is spent: every attempt waits, the right key too, on every route that takes it
        for reply in [
            await admin(api, "GET", "rooms"),
            await admin(api, "GET", "rooms", key="wrong"),
            await metrics(api, KEY),
        ]:
            assert (reply.status, reply.code) == (429, 12), reply
            assert reply.body["detail"].startswith("client 127.0.0.1 asks for credentials faster than 0.001")


async def test_the_bearer_scheme_is_matched_in_any_case_and_a_non_ascii_key_as_utf_8() -> None:
    key = "clé-d\u2019admin"
    async with open_roomd(make_settings(ROOMD_AUTH__ADMIN_KEY=key)) as api:
        for scheme in ("Bearer", "bearer", "BEARER"):
            reply = await api.http.get("/admin/v1/rooms", headers={"Authorization": f"{scheme} {key}".encode()})
            assert reply.status_code == 200, scheme
        latin_1 = f"Bearer {key}".encode().decode("latin-1")  # what a Latin-1 reading of it would send
        reply = await api.http.get("/admin/v1/rooms", headers={"Authorization": latin_1.encode("utf-8")})
        assert reply.status_code == 401


async def test_rooms_are_listed_page_by_page_with_a_cursor(world: tuple[Api, FakeIm]) -> None:
    api, _ = world
    made = []
    for i in range(5):
        made.append((await api.post("create_room", member_fields(f"c{i}", roomName=f"r{i}"))).body["roomID"])
    waiting = (await api.post("create_room", {"userID": "w", "roomInfo": "waits"})).body["roomID"]
    later = (await api.post("add_pusher", joining("anchor", "room_live"), kind="live_room")).body
    assert later["code"] == 0
    seen: list[tuple[str, str]] = []
    cursor = ""
    while True:
        page = await admin(api, "GET", f"rooms?limit=2&cursor={cursor}")
        assert page.code == 0 and len(page.body["rooms"]) <= 2
        seen.extend((room["kind"], room["roomID"]) for room in page.body["rooms"])
        cursor = page.body["cursor"]
        if cursor is None:
            break
    assert seen == [*(("multi_room", r) for r in [*made, waiting]), ("live_room", "room_live")]
    active = await admin(api, "GET", "rooms?kind=multi_room&state=active&limit=100")
    assert [r["roomID"] for r in active.body["rooms"]] == made
    first = active.body["rooms"][0]
    assert (first["creator"], first["roomInfo"], first["members"], first["state"]) == ("c0", "r0", 1, "active")
    only_waiting = await admin(api, "GET", "rooms?state=waiting")
    assert [r["roomID"] for r in only_waiting.body["rooms"]] == [waiting]
    for query in ("limit=0", "limit=501", "limit=x", "state=gone", "kind=nope", "cursor=nope:1", "cursor=multi_room:x"):
        refused = await admin(api, "GET", f"rooms?{query}")
        assert (refused.status, refused.code) == (400, 1), query
        assert refused.body["detail"]


async def test_a_room_is_shown_with_its_members_deadlines_audiences_custom_fields_and_im(
    world: tuple[Api, FakeIm],
) -> None:
    api, _ = world
    assert (await api.post("add_pusher", joining("anchor", "room_x"), kind="live_room")).code == 0
    body = {"roomID": "room_x", "userID": "v", "userInfo": '{"userName":"v"}'}
    assert (await api.post("add_audience", body, kind="live_room")).code == 0
    field = {"roomID": "room_x", "userID": "anchor", "fieldName": "likes", "operation": "inc"}
    assert (await api.post("set_custom_field", field, kind="live_room")).code == 0
    shown = await admin(api, "GET", "rooms/live_room/room_x")
    room = shown.body["room"]
    assert (room["roomID"], room["state"], room["creator"]) == ("room_x", "active", "anchor")
    assert [m["userID"] for m in room["members"]] == ["anchor"]
    assert 0 < room["members"][0]["deadlineIn"] <= api.ctx.settings.kinds["live_room"].heartbeat_timeout
    assert room["audiences"] == [{"userID": "v", "userInfo": '{"userName":"v"}'}]
    assert room["custom"] == {"likes": 1}
    assert set(room["im"]) == {"queued", "in_flight"}
    missing = await admin(api, "GET", "rooms/live_room/room_none")
    assert (missing.status, missing.code) == (404, 3)
    assert (await admin(api, "GET", "rooms/no_kind/room_x")).status == 404
    assert (await admin(api, "GET", "rooms/live_room/bad%20id")).status == 400


async def test_a_removed_member_is_told_on_its_next_heartbeat_and_im_is_notified(
    world: tuple[Api, FakeIm], lines: list[str]
) -> None:
    api, fake = world
    room_id = (await api.post("create_room", member_fields("alice", roomName="k"))).body["roomID"]
    assert (await api.post("add_pusher", joining("bob", room_id))).code == 0
    await eventually(lambda: "send_group_system_notification" in fake.calls_for(room_id))
    notified = fake.calls_for(room_id).count("send_group_system_notification")
    assert (await admin(api, "DELETE", f"rooms/multi_room/{room_id}/members/bob")).code == 0
    assert (await api.post("pusher_heartbeat", {"roomID": room_id, "userID": "bob"})).code == 5
    pushers = await api.post("get_pushers", {"roomID": room_id})
    assert [p["userID"] for p in pushers.body["pushers"]] == ["alice"]
    await eventually(lambda: fake.calls_for(room_id).count("send_group_system_notification") > notified)
    mine = [line for line in lines if f"root/multi_room/{room_id}" in line]
    assert any("member left user=bob reason=kicked" in line for line in mine)
    assert any("user=bob by=admin" in line for line in mine)
    again = await admin(api, "DELETE", f"rooms/multi_room/{room_id}/members/bob")
    assert (again.status, again.code) == (404, 5)


async def test_a_closed_room_is_gone_with_its_im_group(world: tuple[Api, FakeIm], lines: list[str]) -> None:
    api, fake = world
    room_id = (await api.post("create_room", member_fields("alice", roomName="c"))).body["roomID"]
    assert (await admin(api, "DELETE", f"rooms/multi_room/{room_id}")).code == 0
    assert (await api.post("get_pushers", {"roomID": room_id})).code == 3
    await eventually(lambda: "destroy_group" in fake.calls_for(room_id))
    assert any(f"root/multi_room/{room_id}" in line and "reason=admin_closed" in line for line in lines)
    assert (await admin(api, "DELETE", f"rooms/multi_room/{room_id}")).status == 404


async def test_room_info_and_custom_fields_change_and_bad_changes_change_nothing(world: tuple[Api, FakeIm]) -> None:
    api, _ = world
    room_id = (await api.post("create_room", member_fields("alice", roomName="before"))).body["roomID"]
    changed = await admin(
        api, "PATCH", f"rooms/multi_room/{room_id}", {"roomInfo": "after", "custom": {"a": "x", "n": 3}}
    )
    assert changed.code == 0 and changed.body["room"]["custom"] == {"a": "x", "n": 3}
    pushers = await api.post("get_pushers", {"roomID": room_id})
    assert (pushers.body["roomInfo"], json.loads(pushers.body["custom"])) == ("after", {"a": "x", "n": 3})
    for bad in (
        {},
        {"roomInfo": 5},
        {"custom": {"a": True}},
        {"custom": {"a": 1.5}},
        {"custom": {"": "x"}},
        {"custom": {f"f{i}": i for i in range(17)}},
        {"custom": [1]},
        {"color": "red"},
        {"custom": {"a": "y" * 1025}},
    ):
        refused = await admin(api, "PATCH", f"rooms/multi_room/{room_id}", bad)
        assert (refused.status, refused.code) == (400, 1), bad
    too_long = await admin(api, "PATCH", f"rooms/multi_room/{room_id}", {"roomInfo": "好" * 400})
    assert too_long.code == 10
    over = {f"g{i}": i for i in range(15)}  # 2 held + 15 new: one over the limit
    assert (await admin(api, "PATCH", f"rooms/multi_room/{room_id}", {"custom": over})).code == 1
    pushers = await api.post("get_pushers", {"roomID": room_id})
    assert (pushers.body["roomInfo"], json.loads(pushers.body["custom"])) == ("after", {"a": "x", "n": 3})


async def test_a_notification_reaches_the_rooms_im_group_as_sent(world: tuple[Api, FakeIm]) -> None:
    api, fake = world
    room_id = (await api.post("create_room", member_fields("alice", roomName="n"))).body["roomID"]
    content = '{"cmd":"maintenance","data":"in 5 minutes"}'
    assert (await admin(api, "POST", f"rooms/multi_room/{room_id}/notify", {"content": content})).code == 0
    await eventually(lambda: any(c.body.get("Content") == content for c in fake.calls if c.answered == "ok"))
    assert (await admin(api, "POST", "rooms/multi_room/room_none/notify", {"content": "x"})).status == 404
    for bad in ({}, {"content": ""}, {"content": 1}, {"content": "x" * 1025}):
        assert (await admin(api, "POST", f"rooms/multi_room/{room_id}/notify", bad)).status == 400


async def test_on_three_nodes_any_node_lists_shows_and_acts_on_any_room(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 3, ROOMD_AUTH__ADMIN_KEY=KEY) as nodes:
        made = []
        for i, node in enumerate(nodes):
            made.append((await node.post("create_room", member_fields(f"c{i}", roomName=f"r{i}"))).body["roomID"])
        assert (await nodes[0].post("add_pusher", joining("bob", made[2]))).code == 0
        for node in nodes:
            listing = await admin(node, "GET", "rooms?kind=multi_room&limit=2")
            rest = await admin(node, "GET", f"rooms?kind=multi_room&cursor={listing.body['cursor']}")
            assert [r["roomID"] for r in listing.body["rooms"] + rest.body["rooms"]] == made
            assert rest.body["cursor"] is None
        shown = await admin(nodes[0], "GET", f"rooms/multi_room/{made[2]}")
        assert [m["userID"] for m in shown.body["room"]["members"]] == ["c2", "bob"]
        assert (await admin(nodes[1], "DELETE", f"rooms/multi_room/{made[2]}/members/bob")).code == 0
        assert (await nodes[2].post("pusher_heartbeat", {"roomID": made[2], "userID": "bob"})).code == 5
        assert (await admin(nodes[0], "DELETE", f"rooms/multi_room/{made[1]}")).code == 0
        remaining = await admin(nodes[2], "GET", "rooms?kind=multi_room&state=active")
        assert [r["roomID"] for r in remaining.body["rooms"]] == [made[0], made[2]]


async def test_the_console_signs_in_with_the_key_into_a_cookie_that_reads_and_with_its_header_acts() -> None:
    async with open_roomd(make_settings(ROOMD_AUTH__ADMIN_KEY=KEY)) as api:
        form = await api.http.get("/console")
        assert form.status_code == 200 and 'name="key"' in form.text
        assert "script-src 'self'" in form.headers["content-security-policy"]
        refused = await api.http.post("/console/login", content=b"key=wrong", headers=FORM)
        assert refused.status_code == 401 and "set-cookie" not in refused.headers
        bookmarked = await api.http.get("/console/login")  # the form's target, opened: to the form
        assert (bookmarked.status_code, bookmarked.headers["location"]) == (303, "/console")
        signed_in = await api.http.post("/console/login", content=f"key={KEY}".encode(), headers=FORM)
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and KEY not in cookie
        jar = {"Cookie": cookie.split(";", 1)[0]}
        page = await api.http.get("/console", headers=jar)
        assert 'src="/console/app.js"' in page.text and "<script>" not in page.text
        assert (
            (await api.http.get("/console/app.js", headers=jar))
            .headers["content-type"]
            .startswith("application/javascript")
        )
        room_id = (await api.post("create_room", member_fields("alice", roomName="c"))).body["roomID"]
        assert (await api.http.get("/admin/v1/rooms", headers=jar)).json()["code"] == 0
        path = f"/admin/v1/rooms/multi_room/{room_id}/members/alice"
        assert (await api.http.delete(path, headers=jar)).status_code == 401  # a change needs the console's header
        assert (await api.http.delete(path, headers={**jar, "X-Roomd-Console": "1"})).json()["code"] == 0
        forged = {"Cookie": "roomd_console=9999999999." + "0" * 64}
        assert (await api.http.get("/admin/v1/rooms", headers=forged)).status_code == 401
        signed_out = await api.http.post("/console/logout", headers=jar)
        assert "Max-Age=0" in signed_out.headers["set-cookie"]
    async with open_roomd(make_settings()) as keyless:
        assert (await keyless.http.get("/console")).status_code == 404
