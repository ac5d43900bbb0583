"""Tencent's later mini-program client, call for call, against a real roomd process in token mode
with IM and the live mixing API faked on loopback: log in without a userID, enter a room that
does not exist yet, a linked mic joins, a viewer comes and goes, likes are counted, the anchor
mixes the streams and leaves, and the room is gone."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.fake_im import FakeIm, start_fake_im
from tests.fake_mixer import FakeMixer, start_fake_mixer
from tests.server_process import running_roomd

pytestmark = pytest.mark.slow

SDK_APP_ID = 1400000012
IM_SECRET = "later-client-im-secret"
LIVE_APP_ID, LIVE_API_KEY = 1250000001, "later-client-live-key"
KIND = "/weapp/live_room"


class LaterClient:
    """What wxlite/utils/liveroom.js sends: every call a POST with a JSON body and
    ?userID=&token= in the query once logged in."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.user_id = ""
        self.token = ""

    async def log_in(self, prefix: str) -> dict[str, Any]:
        info = (await self.http.get("/weapp/utils/get_login_info", params={"userIDPrefix": prefix})).json()
        assert info["code"] == 0, info
        self.user_id = info["userID"]
        login = await self.http.post(
            f"{KIND}/login",
            params={
                "accountType": info["accType"],
                "sdkAppID": info["sdkAppID"],
                "userSig": info["userSig"],
                "userID": self.user_id,
            },
            json={},
        )
        body: dict[str, Any] = login.json()
        assert body["code"] == 0 and body["userID"] == self.user_id, body
        self.token = body["token"]
        return info

    async def call(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        reply = await self.http.post(
            f"{KIND}/{endpoint}", params={"userID": self.user_id, "token": self.token}, json=data
        )
        body: dict[str, Any] = reply.json()
        return body

    async def push_url(self) -> str:
        reply = await self.call("get_push_url", {"userID": self.user_id})
        assert reply["code"] == 0, reply
        url: str = reply["pushURL"]
        return url

    def me(self, push_url: str) -> dict[str, Any]:
        return {
            "userID": self.user_id,
            "userName": f"name {self.user_id}",
            "userAvatar": "https://a.test/a.png",
            "pushURL": push_url,
        }


async def test_the_later_client_goes_through_a_whole_live_room(tmp_path: Any) -> None:
    async with trio.open_nursery() as nursery:
        im = await start_fake_im(nursery, FakeIm(SDK_APP_ID, "admin", secret_key=IM_SECRET))
        mixer = await start_fake_mixer(nursery, FakeMixer(LIVE_APP_ID, LIVE_API_KEY))
        env = {
            "ROOMD_AUTH__MODE": "token",
            "ROOMD_IM__SDK_APP_ID": str(SDK_APP_ID),
            "ROOMD_IM__SECRET_KEY": IM_SECRET,
            "ROOMD_IM__BASE_URL": im.base_url,
            "ROOMD_LIVE__BIZID": "8888",
            "ROOMD_LIVE__PUSH_SECRET_KEY": "push-key",
            "ROOMD_LIVE__APP_ID": str(LIVE_APP_ID),
            "ROOMD_LIVE__API_KEY": LIVE_API_KEY,
            "ROOMD_LIVE__API_BASE_URL": mixer.base_url,
        }
        async with running_roomd(tmp_path, **env) as server, httpx.AsyncClient(base_url=server.base_url) as http:
            anchor, mic, viewer = LaterClient(http), LaterClient(http), LaterClient(http)
            for client, prefix in ((anchor, "weixin"), (mic, "weixin"), (viewer, "weixin")):
                await client.log_in(prefix)
            assert len({anchor.user_id, mic.user_id, viewer.user_id}) == 3

            # enterRoom on a roomID nobody made yet: add_pusher makes it, with roomInfo
            room_id = "r-later-1"
            anchor_url = await anchor.push_url()
            entered = await anchor.call("add_pusher", {**anchor.me(anchor_url), "roomID": room_id, "roomInfo": "t"})
            assert (entered["code"], entered["roomID"]) == (0, room_id), entered
            assert room_id in im.groups
            assert (await anchor.call("pusher_heartbeat", {"roomID": room_id, "userID": anchor.user_id}))["code"] == 0

            # a linked mic joins the existing room
            mic_url = await mic.push_url()
            assert (await mic.call("add_pusher", {**mic.me(mic_url), "roomID": room_id}))["code"] == 0

            # a viewer comes (userInfo as the client sends it: a JSON string) and goes
            info = json.dumps({"userName": "viewer", "userAvatar": ""})
            joined = await viewer.call("add_audience", {"roomID": room_id, "userID": viewer.user_id, "userInfo": info})
            assert joined["code"] == 0, joined
            audiences = await viewer.call("get_audiences", {"roomID": room_id})
            assert audiences["audienceCount"] == 1 and audiences["audiences"] == [
                {"userID": viewer.user_id, "userInfo": info}
            ]
            pushers = await viewer.call("get_pushers", {"roomID": room_id})
            assert pushers["roomCreator"] == anchor.user_id and pushers["audienceCount"] == 1
            assert [p["userID"] for p in pushers["pushers"]] == [anchor.user_id, mic.user_id]
            assert (await viewer.call("delete_audience", {"roomID": room_id, "userID": viewer.user_id}))["code"] == 0
            assert (await viewer.call("get_audiences", {"roomID": room_id}))["audienceCount"] == 0

            # likes: a custom field incremented three times
            for _ in range(3):
                liked = await anchor.call(
                    "set_custom_field", {"roomID": room_id, "fieldName": "likes", "operation": "inc"}
                )
                assert liked["code"] == 0, liked
            custom = await anchor.call("get_custom_info", {"roomID": room_id})
            assert json.loads(custom["custom"]) == {"likes": 3}

            # the anchor mixes the two streams (mergeParams as the mini-program sends it: a JSON string)
            mix = {"interface": {"interfaceName": "Mix_StreamV2", "para": {"app_id": str(SDK_APP_ID)}}}
            merged = await anchor.call(
                "merge_stream", {"roomID": room_id, "userID": anchor.user_id, "mergeParams": json.dumps(mix)}
            )
            assert merged["code"] == 0 and merged["result"]["code"] == 0, merged
            assert [call.params() for call in mixer.calls] == [mix]

            # exit: the anchor leaving closes a live room
            assert (await mic.call("delete_pusher", {"roomID": room_id, "userID": mic.user_id}))["code"] == 0
            assert (await anchor.call("delete_pusher", {"roomID": room_id, "userID": anchor.user_id}))["code"] == 0
            gone = await viewer.call("get_pushers", {"roomID": room_id})
            assert gone["code"] == 3
            with trio.fail_after(10):
                while room_id in im.groups:  # noqa: ASYNC110  # the fake IM server's state: no event to wait on
                    await trio.sleep(0.05)
        assert server.process.returncode == 0
        nursery.cancel_scope.cancel()
