"""The later client generation (token login, add_pusher entering a room that may not exist yet,
roomInfo, an empty roomID for none) against the in-process app."""

from __future__ import annotations

import trio

from tests.bodies import joining, member_fields
from tests.conftest import Api, make_settings, open_im_world, open_roomd


async def test_entering_a_room_that_does_not_exist_makes_it(api: Api) -> None:
    entered = await api.post("add_pusher", joining("alice", "r-new", roomInfo='{"title":"t"}'))
    assert (entered.code, entered.body["roomID"]) == (0, "r-new")
    room = (await api.post("get_pushers", {"roomID": "r-new"})).body
    assert (room["roomCreator"], room["roomInfo"]) == ("alice", '{"title":"t"}')
    assert [p["userID"] for p in room["pushers"]] == ["alice"]
    again = await api.post("add_pusher", joining("bob", "r-new"))  # an existing room: an ordinary join
    assert again.code == 0 and "roomID" not in again.body
    bare = await api.post("add_pusher", joining("carol", "r-bare"))  # no roomInfo: an empty one
    assert bare.code == 0 and (await api.post("get_pushers", {"roomID": "r-bare"})).body["roomInfo"] == ""
    assert (await api.post("get_room_list")).body["rooms"][0]["roomID"] == "r-new"


async def test_with_create_on_join_off_entering_an_unknown_room_is_code_3() -> None:
    settings = make_settings(ROOMD_KINDS__MULTI_ROOM__CREATE_ON_JOIN="false")
    async with open_roomd(settings) as api:
        refused = await api.post("add_pusher", joining("alice", "r-new"))
        assert (refused.code, refused.body["detail"]) == (3, "room r-new does not exist")
        assert (await api.post("add_pusher", joining("bob", "r-new"), kind="double_room")).code == 0


async def test_clients_entering_one_new_room_at_once_make_one_room_with_all_that_fit() -> None:
    async with open_im_world() as (api, fake):
        fake.behave(delay=0.2, only_api="create_group")  # the room is still being made when the others come
        replies: dict[str, int] = {}

        async def enter(user_id: str) -> None:
            replies[user_id] = (await api.post("add_pusher", joining(user_id, "r-duo"), kind="double_room")).code

        async with trio.open_nursery() as nursery:
            for user_id in ("alice", "bob", "carol"):
                nursery.start_soon(enter, user_id)
        assert sorted(replies.values()) == [0, 0, 5001]  # never two rooms, never an 11
        room = (await api.post("get_pushers", {"roomID": "r-duo"}, kind="double_room")).body
        members = {p["userID"] for p in room["pushers"]}
        assert members == {u for u, code in replies.items() if code == 0} and room["roomCreator"] in members
        assert [c.api for c in fake.calls if c.api == "create_group"] == ["create_group"]


async def test_entering_a_new_room_that_im_refuses_leaves_nothing() -> None:
    async with open_im_world() as (api, fake):
        fake.behave(mode="error_code", error_code=10004, only_api="create_group")
        refused = await api.post("add_pusher", joining("alice", "r-new"))
        assert refused.code == 6
        assert (await api.post("get_pushers", {"roomID": "r-new"})).code == 3


async def test_an_empty_room_id_means_none_and_an_empty_room_info_is_a_room_info(api: Api) -> None:
    made = await api.post("create_room", {"userID": "alice", "roomID": "", "roomInfo": ""})
    assert made.code == 0 and made.body["roomID"].startswith("room_")
    seed = await api.post("create_room", {**member_fields("bob"), "roomName": ""})
    assert seed.code == 0
    assert (await api.post("get_pushers", {"roomID": seed.body["roomID"]})).body["roomName"] == ""
    missing = await api.post("create_room", {"userID": "carol"})
    assert (missing.code, missing.body["detail"]) == (1, "roomInfo or roomName is required")


async def test_token_mode_logs_in_without_a_user_id_and_enters_with_its_token() -> None:
    settings = make_settings(ROOMD_AUTH__MODE="token", ROOMD_AUTH__TOKEN_SECRET="later-clients-test-secret")
    async with open_roomd(settings) as api:
        login = (await api.get("/weapp/utils/get_login_info?userIDPrefix=android")).body
        assert login["code"] == 0 and login["userID"].startswith("android_") and login["token"] and login["expires"]
        auth = f"?userID={login['userID']}&token={login['token']}"
        entered = await api.raw(
            f"/weapp/multi_room/add_pusher{auth}",
            f'{{"roomID":"r-tok","userID":"{login["userID"]}","userName":"a","userAvatar":"",'
            f'"pushURL":"rtmp://8888.livepush.myqcloud.com/live/8888_{login["userID"]}"}}'.encode(),
            "application/json",
        )
        assert entered.code == 0 and entered.body["roomID"] == "r-tok"
        someone_else = await api.raw(
            f"/weapp/multi_room/add_pusher{auth}", b'{"roomID":"r-x","userID":"mallory"}', "application/json"
        )
        assert someone_else.code == 7


async def test_token_mode_get_login_info_signs_only_for_the_tokens_user() -> None:
    settings = make_settings(ROOMD_AUTH__MODE="token", ROOMD_AUTH__TOKEN_SECRET="later-clients-test-secret")
    async with open_roomd(settings) as api:
        me = (await api.get("/weapp/utils/get_login_info")).body
        auth = f"?userID={me['userID']}&token={me['token']}"
        own = await api.get(f"/weapp/utils/get_login_info{auth}")
        assert own.code == 0 and own.body["userID"] == me["userID"]
        for body, content_type in (
            (b'{"userID":"victim"}', "application/json"),
            (b"userID=victim", "application/x-www-form-urlencoded"),
        ):
            other = await api.raw(f"/weapp/utils/get_login_info{auth}", body, content_type)
            assert (other.code, "userSig" in other.body) == (7, False)


async def test_entering_a_room_another_client_is_making_costs_no_creation_allowance() -> None:
    limits = {"ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS": "0.0001", "ROOMD_LIMITS__CREATE_BURST_PER_ADDRESS": "2"}
    async with open_im_world(**limits) as (api, fake):
        fake.behave(delay=0.2, only_api="create_group")
        codes: list[int] = []

        async def enter(user_id: str, room_id: str) -> None:
            codes.append((await api.post("add_pusher", joining(user_id, room_id))).code)

        async with trio.open_nursery() as nursery:
            for user_id in ("alice", "bob"):
                nursery.start_soon(enter, user_id, "r-one")
        assert codes == [0, 0]  # one made it, the other joined: that join is given its allowance back
        await enter("carol", "r-two")
        assert codes[-1] == 0
        refused = await api.post("add_pusher", joining("dave", "r-three"))
        assert (refused.code, refused.status) == (12, 429)  # two rooms made: the burst of 2 is spent
