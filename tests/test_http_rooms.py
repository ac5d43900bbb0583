"""The legacy room routes over HTTP (in-process): flows, fields and codes."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from loguru import logger

from roomd.config import Settings
from roomd.qcloud.usersig import Verified
from tests.bodies import member_fields
from tests.conftest import Api, Reply, make_settings, open_roomd
from tests.loopback_http import FakeReply, FakeRequest, Handler, serve_loopback


async def test_seed_era_create_makes_creator_the_first_member(api: Api) -> None:
    reply = await api.post("create_room", {**member_fields("alice"), "roomName": "alice's room"})
    assert reply.code == 0 and reply.status == 200
    room_id = reply.body["roomID"]
    assert room_id.startswith("room_") and len(room_id) == 17
    pushers = await api.post("get_pushers", {"roomID": room_id})
    assert pushers.body["roomName"] == pushers.body["roomInfo"] == "alice's room"
    assert pushers.body["roomCreator"] == "alice"
    assert [p["userID"] for p in pushers.body["pushers"]] == ["alice"]
    assert "pushURL" not in pushers.body["pushers"][0]
    assert pushers.body["pushers"][0]["accelerateURL"].startswith(
        "rtmp://8888.liveplay.myqcloud.com/live/8888_alice?bizid=8888&txSecret="
    )
    assert pushers.body["mixedPlayURL"] == "https://8888.liveplay.myqcloud.com/live/8888_alice.flv"


async def test_later_client_create_waits_for_add_member_fields(api: Api) -> None:
    reply = await api.post("create_room", {"userID": "alice", "roomInfo": '{"title":"t"}'})
    room_id = reply.body["roomID"]
    assert reply.code == 0
    assert (await api.post("get_room_list")).body["rooms"] == []  # waiting rooms are not listed
    assert (await api.post("add_pusher", {**member_fields("alice"), "roomID": room_id})).code == 0
    rooms = (await api.post("get_room_list")).body["rooms"]
    assert [r["roomID"] for r in rooms] == [room_id]
    assert rooms[0]["roomInfo"] == '{"title":"t"}' and rooms[0]["memberCount"] == 1


async def test_explicit_room_id_in_use_is_code_11(api: Api) -> None:
    assert (await api.post("create_room", {"userID": "a", "roomInfo": "x", "roomID": "r1"})).code == 0
    again = await api.post("create_room", {"userID": "b", "roomInfo": "y", "roomID": "r1"})
    assert again.code == 11 and again.body["message"] == "房间已经存在"
    assert "r1" in again.body["detail"]


async def test_unknown_room_is_code_3_everywhere(api: Api) -> None:
    for endpoint, body in [
        ("delete_pusher", {"roomID": "nope", "userID": "bob"}),
        ("pusher_heartbeat", {"roomID": "nope", "userID": "bob"}),
        ("get_pushers", {"roomID": "nope"}),
        ("destroy_room", {"roomID": "nope", "userID": "bob"}),
    ]:
        reply = await api.post(endpoint, body)
        assert reply.code == 3, endpoint
        assert reply.body["message"] == "请求的房间不存在"
        assert reply.body["detail"] == "room nope does not exist"


async def test_destroy_by_non_creator_is_code_3_with_its_own_message(api: Api) -> None:
    room_id = (await api.post("create_room", {**member_fields("alice"), "roomName": "r"})).body["roomID"]
    reply = await api.post("destroy_room", {"roomID": room_id, "userID": "bob"})
    assert reply.code == 3 and reply.body["message"] == "不是房间主人，无法销毁房间"
    assert (await api.post("get_pushers", {"roomID": room_id})).code == 0


async def test_non_member_leave_and_heartbeat_are_code_5(api: Api) -> None:
    room_id = (await api.post("create_room", {**member_fields("alice"), "roomName": "r"})).body["roomID"]
    for endpoint in ("delete_pusher", "pusher_heartbeat"):
        reply = await api.post(endpoint, {"roomID": room_id, "userID": "bob"})
        assert reply.code == 5 and reply.body["message"] == "不是房间成员"


async def test_full_room_is_code_5001(api: Api) -> None:
    room_id = (await api.post("create_room", {**member_fields("alice"), "roomName": "r"}, kind="double_room")).body[
        "roomID"
    ]
    assert (await api.post("add_pusher", {**member_fields("bob"), "roomID": room_id}, kind="double_room")).code == 0
    full = await api.post("add_pusher", {**member_fields("carol"), "roomID": room_id}, kind="double_room")
    assert full.code == 5001 and full.body["detail"] == f"room {room_id} is full (2/2)"


async def test_kinds_have_separate_directories(api: Api) -> None:
    room_id = (await api.post("create_room", {**member_fields("alice"), "roomName": "r"})).body["roomID"]
    assert (await api.post("get_pushers", {"roomID": room_id}, kind="double_room")).code == 3


async def test_rejoin_updates_the_member(api: Api) -> None:
    room_id = (await api.post("create_room", {**member_fields("alice"), "roomName": "r"})).body["roomID"]
    again = await api.post("add_pusher", {**member_fields("alice", userName="Alice B."), "roomID": room_id})
    assert again.code == 0
    pushers = (await api.post("get_pushers", {"roomID": room_id})).body["pushers"]
    assert [(p["userID"], p["userName"]) for p in pushers] == [("alice", "Alice B.")]


async def test_get_im_login_info_allocates_fresh_user_ids(api: Api) -> None:
    first = await api.post("get_im_login_info", {"userIDPrefix": "android"})
    second = await api.post("get_im_login_info", {"userIDPrefix": "android"})
    assert first.code == second.code == 0
    assert first.body["userID"].startswith("android_") and first.body["userID"] != second.body["userID"]
    assert first.body["sdkAppID"] == 0 and isinstance(first.body["userSig"], str)
    verified = api.ctx.user_signer.verify(first.body["userSig"], first.body["userID"], now=api.ctx.now())
    assert isinstance(verified, Verified) and verified.identifier == first.body["userID"]


async def test_get_push_url_is_signed_for_the_user(api: Api) -> None:
    reply = await api.post("get_push_url", {"userID": "alice"})
    assert reply.code == 0
    url = reply.body["pushURL"]
    assert url.startswith("rtmp://8888.livepush.myqcloud.com/live/8888_alice?bizid=8888&txSecret=")


async def test_utils_get_login_info(api: Api) -> None:
    reply = await api.get("/weapp/utils/get_login_info?userID=alice")
    assert reply.code == 0 and reply.body["userID"] == "alice" and reply.body["userSig"]
    for fresh in (
        await api.get("/weapp/utils/get_login_info"),
        await api.get("/weapp/utils/get_login_info?userID="),
        await api.raw("/weapp/utils/get_login_info", b'{"userIDPrefix":"android"}', "application/json"),
    ):
        assert fresh.code == 0 and fresh.body["userSig"]
        assert set(fresh.body) == {"code", "message", "userID", "sdkAppID", "accType", "userSig"}
    assert fresh.body["userID"].startswith("android_")
    assert (await api.get("/weapp/utils/get_login_info")).body["userID"].startswith("user_")
    bad = await api.get("/weapp/utils/get_login_info?userIDPrefix=a/b")
    assert bad.code == 1 and "userIDPrefix" in bad.body["detail"]


async def test_room_list_paging(api: Api) -> None:
    ids = []
    for i in range(5):
        ids.append((await api.post("create_room", {**member_fields(f"u{i}"), "roomName": f"r{i}"})).body["roomID"])
    page = await api.post("get_room_list", {"index": 1, "cnt": 2})
    assert [r["roomID"] for r in page.body["rooms"]] == ids[1:3]
    assert page.body["rooms"][0]["pushers"][0]["userID"] == "u1"
    form = await api.raw("/weapp/multi_room/get_room_list", b"index=3&cnt=5", "application/x-www-form-urlencoded")
    assert [r["roomID"] for r in form.body["rooms"]] == ids[3:]
    for bad in ({"index": -1}, {"cnt": -3}, {"cnt": 1.5}, {"index": "x"}, {"cnt": True}):
        reply = await api.post("get_room_list", bad)
        assert reply.code == 1, bad
    assert "cnt" not in page.body  # within the limit: nothing said
    over = await api.post("get_room_list", {"cnt": 500})
    assert over.code == 0 and over.body["cnt"] == 100 and len(over.body["rooms"]) == 5  # the limit is said


async def test_listing_entries_are_kept_unless_escaped_text_makes_them_large(api: Api) -> None:
    """Control characters are six bytes each in JSON: a room of them lists in far more bytes than it
    holds, and such an entry is encoded at each listing instead of kept beside the room."""
    plain = {**member_fields("alice"), "roomName": "p" * 1024}
    escaped = {**member_fields("bob"), "roomName": "\x01" * 1024, "userAvatar": "\x01" * 1024}
    assert (await api.post("create_room", plain)).code == 0
    created = await api.post("create_room", escaped)
    assert created.code == 0
    for field in range(16):
        value = {"fieldName": f"f{field}", "operation": "set", "value": "\x01" * 1024}
        assert (await api.post("set_custom_field", {"roomID": created.body["roomID"], **value})).code == 0
    for _ in range(2):  # the second listing reads what the first kept, and makes what was not kept again
        rooms = (await api.post("get_room_list", {"cnt": 10})).body["rooms"]
        assert sorted(r["roomName"][:1] for r in rooms) == ["\x01", "p"]
        kept = sorted(room.creator for room in api.ctx.listing_entries)
        assert kept == ["alice"]


async def test_room_leaves_the_list_when_destroyed(api: Api) -> None:
    room_id = (await api.post("create_room", {**member_fields("alice"), "roomName": "r"})).body["roomID"]
    assert (await api.post("destroy_room", {"roomID": room_id, "userID": "alice"})).code == 0
    assert (await api.post("get_room_list")).body["rooms"] == []
    assert (await api.post("get_pushers", {"roomID": room_id})).code == 3


async def test_get_room_list_route_never_messages_a_room(api: Api) -> None:
    for i in range(8):
        await api.post("create_room", {**member_fields(f"u{i}"), "roomName": f"r{i}"})
    directory = api.system.directories["multi_room"]
    delivered = {room_id: box.delivered for room_id, box in directory.room_mailboxes().items()}
    listed = await api.post("get_room_list", {"index": 2, "cnt": 3})
    assert [r["roomCreator"] for r in listed.body["rooms"]] == ["u2", "u3", "u4"]
    assert {room_id: box.delivered for room_id, box in directory.room_mailboxes().items()} == delivered


async def test_an_unknown_kind_or_endpoint_is_404_whatever_the_method(api: Api) -> None:
    for method in ("GET", "POST", "PUT"):
        for path in ("/weapp/nokind/x", "/weapp/multi_room/no_such_endpoint"):
            reply = await api.raw(path, b"{}", "application/json", method=method)
            assert (reply.status, reply.code) == (404, 1), (method, path, reply.body)
    reply = await api.raw("/weapp/multi_room/get_pushers", b"{}", "application/json", method="GET")
    assert reply.status == 405


async def test_a_refused_join_by_the_creator_changes_nothing(api: Api) -> None:
    room = (await api.post("create_room", {"userID": "alice", "roomInfo": "before", "roomID": "r-full"})).body["roomID"]
    for i in range(6):
        assert (await api.post("add_pusher", {**member_fields(f"u{i}"), "roomID": room})).code == 0
    refused = await api.post("add_pusher", {**member_fields("alice"), "roomID": room, "roomInfo": "after"})
    assert refused.code == 5001
    assert (await api.post("get_pushers", {"roomID": room})).body["roomInfo"] == "before"


async def test_a_refused_creation_spends_no_creation_allowance() -> None:
    settings = make_settings(
        ROOMD_LIMITS__CREATE_RATE_PER_USER="0.001",
        ROOMD_LIMITS__CREATE_BURST_PER_USER="3",
        ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS="0.001",
        ROOMD_LIMITS__CREATE_BURST_PER_ADDRESS="4",
        ROOMD_KINDS__MULTI_ROOM__MAX_WAITING_ROOMS="1",
    )
    async with open_roomd(settings) as api:
        assert (await api.post("create_room", {"userID": "alice", "roomInfo": "w", "roomID": "r1"})).code == 0
        taken = [await api.post("create_room", {"userID": "bob", "roomInfo": "x", "roomID": "r1"}) for _ in range(10)]
        assert [r.code for r in taken] == [11] * 10
        waiting = [await api.post("create_room", {"userID": "carol", "roomInfo": "w"}) for _ in range(10)]
        assert all(r.status == 429 and "max_waiting_rooms" in r.body["detail"] for r in waiting)
        # bob's 3 and the address's 4 (alice took 1) are all still there, and no more
        made = [await api.post("create_room", {**member_fields("bob"), "roomName": "r"}) for _ in range(4)]
        assert [r.code for r in made] == [0, 0, 0, 12]
        assert made[3].status == 429 and "client 127.0.0.1 creates rooms faster" in made[3].body["detail"]


def wechat_settings(base_url: str, **env: str) -> Settings:
    return make_settings(
        ROOMD_WECHAT__APP_ID="wx-app", ROOMD_WECHAT__APP_SECRET="wx-secret", ROOMD_WECHAT__BASE_URL=base_url, **env
    )


async def weixin_login(wechat: Handler, **env: str) -> tuple[Reply, float, list[str]]:
    """get_im_login_info with a WeChat code, WeChat being `wechat`: the reply, its seconds, the warnings."""
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(message.record["message"]), level="WARNING")
    try:
        async with trio.open_nursery() as nursery:
            server = await serve_loopback(nursery, wechat)
            async with open_roomd(wechat_settings(server.base_url, **env)) as api:
                started = trio.current_time()
                reply = await api.post("get_im_login_info", {"userIDPrefix": "weixin", "code": "c"})
                seconds = trio.current_time() - started
            nursery.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    return reply, seconds, warnings


async def test_a_wechat_lookup_is_bounded_by_the_request_deadline() -> None:
    async def never_answers(request: FakeRequest) -> FakeReply | None:
        await trio.sleep_forever()

    reply, seconds, warnings = await weixin_login(
        never_answers, ROOMD_IM__TIMEOUT="0.2", ROOMD_SERVER__CALL_TIMEOUT="1"
    )
    assert reply.code == 0 and reply.body["userID"].startswith("weixin_")
    assert 0.9 < seconds < 3  # the call_timeout, not the lookup's own 5 s
    assert "jscode2session did not answer by the request's deadline; using a random userID" in warnings


@pytest.mark.parametrize(
    "reply",
    [
        FakeReply(200, {}, text=b"[" * 100_000 + b"]" * 100_000),  # deeper than any parser goes
        FakeReply(200, {}, text=b'{"openid": "' + b"o" * 3_000_000 + b'"}'),  # megabytes
        FakeReply(200, {"errcode": 40029, "errmsg": "e" * 1_000_000}),  # an error text of a megabyte
    ],
    ids=["nested", "huge", "huge-errmsg"],
)
async def test_a_wechat_reply_of_any_shape_or_size_falls_back_to_a_random_user_id(reply: FakeReply) -> None:
    async def answer(request: FakeRequest) -> FakeReply | None:
        return reply

    answered, _, warnings = await weixin_login(answer)
    assert answered.code == 0 and answered.body["userID"].startswith("weixin_")
    [warning] = [w for w in warnings if "jscode2session" in w]
    assert warning.endswith("using a random userID") and len(warning) < 500


async def test_a_wechat_reply_trickled_past_its_5_s_is_cut_off_there(autojump_clock: Any) -> None:
    async def trickle(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100_000):  # a byte every half second: each read is quick, the whole reply is not
            await stream.send_all(b" ")
            await trio.sleep(0.5)

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, trickle, 0, host="127.0.0.1"))
        base_url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}"
        async with open_roomd(wechat_settings(base_url)) as api:
            started = trio.current_time()
            answered = await api.post("get_im_login_info", {"userIDPrefix": "weixin", "code": "c"})
            assert trio.current_time() - started == pytest.approx(5, abs=0.6)
        nursery.cancel_scope.cancel()
    assert answered.code == 0 and answered.body["userID"].startswith("weixin_")


@pytest.mark.parametrize(
    "broken",
    [
        FakeReply(200, {}, text=b"[" * 100_000 + b"]" * 100_000),
        FakeReply(200, {}, text=b"{" + b" " * 3_000_000 + b"}"),
        FakeReply(200, {"ActionStatus": "FAIL", "ErrorCode": 10004, "ErrorInfo": "i" * 1_000_000}),
    ],
    ids=["nested", "huge", "huge-error-info"],
)
async def test_an_im_reply_of_any_shape_or_size_fails_that_call_and_im_carries_on(broken: FakeReply) -> None:
    replies = [broken]

    async def im(request: FakeRequest) -> FakeReply | None:
        return replies[-1]

    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(message.record["message"]), level="ERROR")
    try:
        async with trio.open_nursery() as nursery:
            server = await serve_loopback(nursery, im)
            settings = make_settings(
                ROOMD_IM__BASE_URL=server.base_url,
                ROOMD_IM__SDK_APP_ID="1400000001",
                ROOMD_IM__TIMEOUT="1",
                ROOMD_SERVER__CALL_TIMEOUT="2",
            )
            async with open_roomd(settings) as api:
                failed = await api.post("create_room", member_fields("alice", roomName="r"))
                assert failed.code in (6, 12) and len(failed.body.get("detail", "")) < 400, failed.body
                replies.append(FakeReply(200, {"ActionStatus": "OK", "ErrorCode": 0}))
                assert (await api.post("create_room", member_fields("bob", roomName="r"))).code == 0
            nursery.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    assert not [e for e in errors if "crashed" in e]
