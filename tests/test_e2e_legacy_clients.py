"""End to end: a real `roomd serve` process, driven over HTTP like the RTCRoom clients drive it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.fake_im import FakeIm, start_fake_im
from tests.server_process import ServerProcess, running_roomd

pytestmark = pytest.mark.slow

SERVER_ENV = {
    "ROOMD_LIVE__BIZID": "7777",
    "ROOMD_LIVE__PUSH_SECRET_KEY": "e2e-key",
}


class Client:
    """One app instance: it remembers who it is, as the real clients do."""

    def __init__(self, http: httpx.AsyncClient, kind: str = "multi_room") -> None:
        self.http = http
        self.kind = kind
        self.user_id = ""

    async def call(self, endpoint: str, **body: Any) -> dict[str, Any]:
        response = await self.http.post(f"/weapp/{self.kind}/{endpoint}", json=body)
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        assert list(reply)[:2] == ["code", "message"]
        return reply

    async def login(self, prefix: str) -> None:
        reply = await self.call("get_im_login_info", userIDPrefix=prefix)
        assert reply["code"] == 0 and reply["userSig"]
        self.user_id = reply["userID"]

    async def push_url(self) -> str:
        reply = await self.call("get_push_url", userID=self.user_id)
        assert reply["code"] == 0
        url: str = reply["pushURL"]
        assert url.startswith(f"rtmp://7777.livepush.myqcloud.com/live/7777_{self.user_id}?bizid=7777&txSecret=")
        return url

    def me(self, push_url: str) -> dict[str, str]:
        return {
            "userID": self.user_id,
            "userName": f"name-{self.user_id}",
            "userAvatar": f"https://avatars.test/{self.user_id}.png",
            "pushURL": push_url,
        }


async def _seed_era_flow(server: ServerProcess) -> str:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        creator, second, third = Client(http), Client(http), Client(http)
        await creator.login("weixin")
        await second.login("android")
        await third.login("weixin")
        assert creator.user_id.startswith("weixin_") and second.user_id.startswith("android_")

        created = await creator.call("create_room", roomName="Friday call", **creator.me(await creator.push_url()))
        assert created["code"] == 0
        room_id = created["roomID"]

        for client in (second, third):
            pushers = await client.call("get_pushers", roomID=room_id)
            assert pushers["code"] == 0 and pushers["roomCreator"] == creator.user_id
            joined = await client.call("add_pusher", roomID=room_id, **client.me(await client.push_url()))
            assert joined["code"] == 0

        for client in (creator, second, third):
            assert (await client.call("pusher_heartbeat", roomID=room_id, userID=client.user_id))["code"] == 0

        listing = await third.call("get_room_list", index=0, cnt=20)
        assert listing["code"] == 0
        [room] = [r for r in listing["rooms"] if r["roomID"] == room_id]
        assert room["roomName"] == room["roomInfo"] == "Friday call"
        assert room["roomCreator"] == creator.user_id
        assert room["mixedPlayURL"] == f"https://7777.liveplay.myqcloud.com/live/7777_{creator.user_id}.flv"
        assert [p["userID"] for p in room["pushers"]] == [creator.user_id, second.user_id, third.user_id]
        for p, client in zip(room["pushers"], (creator, second, third), strict=True):
            assert p["userName"] == f"name-{client.user_id}"
            assert p["userAvatar"] == f"https://avatars.test/{client.user_id}.png"
            assert p["accelerateURL"] == ""  # a listing never carries signed URLs
            assert "pushURL" not in p
        pushers = await third.call("get_pushers", roomID=room_id)
        for p, client in zip(pushers["pushers"], (creator, second, third), strict=True):
            assert p["accelerateURL"].startswith(
                f"rtmp://7777.liveplay.myqcloud.com/live/7777_{client.user_id}?bizid=7777&txSecret="
            )

        assert (await second.call("delete_pusher", roomID=room_id, userID=second.user_id))["code"] == 0
        pushers = await third.call("get_pushers", roomID=room_id)
        assert [p["userID"] for p in pushers["pushers"]] == [creator.user_id, third.user_id]

        assert (await creator.call("destroy_room", roomID=room_id, userID=creator.user_id))["code"] == 0
        for endpoint, body in [
            ("get_pushers", {"roomID": room_id}),
            ("pusher_heartbeat", {"roomID": room_id, "userID": third.user_id}),
            ("delete_pusher", {"roomID": room_id, "userID": third.user_id}),
            ("destroy_room", {"roomID": room_id, "userID": creator.user_id}),
        ]:
            assert (await third.call(endpoint, **body))["code"] == 3, endpoint
        # (add_pusher to it would make a new room of that ID: kinds.*.create_on_join, tests/test_later_clients.py)
        listing = await third.call("get_room_list")
        assert room_id not in [r["roomID"] for r in listing["rooms"]]
        return room_id


async def test_seed_era_clients(tmp_path: Path) -> None:
    async with running_roomd(tmp_path, **SERVER_ENV) as server:
        room_id = await _seed_era_flow(server)
    story = server.lines_about(room_id)
    assert any("room created" in line for line in story)
    actor = f"root/multi_room/{room_id}"
    assert sum(f"| {actor} | member joined" in line for line in story) == 3
    assert any(f"| {actor} | member left" in line and "reason=left" in line for line in story)
    assert sum(f"| {actor} | member left" in line and "reason=room_closed" in line for line in story) == 2
    assert any(f"| {actor} | room closed reason=destroyed" in line for line in story)
    assert server.process.returncode == 0
    response_logs = list((server.log_dir / "response").glob("response-*.log"))
    assert len(response_logs) == 1
    lines = response_logs[0].read_text().splitlines()
    assert any("POST /weapp/multi_room/create_room" in line and "status=200 code=0" in line for line in lines)
    assert any("POST /weapp/multi_room/get_pushers" in line and "code=3" in line for line in lines)


async def test_later_clients_create_then_add_pusher(tmp_path: Path) -> None:
    async with running_roomd(tmp_path, **SERVER_ENV) as server, httpx.AsyncClient(base_url=server.base_url) as http:
        host, guest = Client(http, "double_room"), Client(http, "double_room")
        for client in (host, guest):
            info = (await http.get("/weapp/utils/get_login_info", params={"userID": f"dev_{id(client)}"})).json()
            assert info["code"] == 0 and info["userSig"]
            client.user_id = info["userID"]
        created = await host.call("create_room", userID=host.user_id, roomInfo='{"title":"1:1"}')
        assert created["code"] == 0
        room_id = created["roomID"]
        waiting = await guest.call("get_pushers", roomID=room_id)
        assert waiting["code"] == 0 and waiting["pushers"] == []
        assert (await host.call("add_pusher", roomID=room_id, **host.me(await host.push_url())))["code"] == 0
        assert (await guest.call("add_pusher", roomID=room_id, **guest.me(await guest.push_url())))["code"] == 0
        late = Client(http, "double_room")
        late.user_id = "late_user"
        full = await late.call("add_pusher", roomID=room_id, **late.me(await late.push_url()))
        assert full["code"] == 5001
        rooms = (await guest.call("get_room_list"))["rooms"]
        assert [(r["roomID"], r["roomInfo"], r["memberCount"]) for r in rooms] == [(room_id, '{"title":"1:1"}', 2)]
        assert (await host.call("delete_pusher", roomID=room_id, userID=host.user_id))["code"] == 0
        # the creator left: the room is closed for everyone
        assert (await guest.call("pusher_heartbeat", roomID=room_id, userID=guest.user_id))["code"] == 3
    assert any(f"root/double_room/{room_id} | room closed reason=creator_left" in line for line in server.output)


async def test_seed_era_clients_with_im_configured(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, FakeIm(1400000002, "roomd_admin", secret_key="e2e-secret"))
        im_env = {
            "ROOMD_IM__SDK_APP_ID": "1400000002",
            "ROOMD_IM__ADMINISTRATOR": "roomd_admin",
            "ROOMD_IM__SECRET_KEY": "e2e-secret",
            "ROOMD_IM__BASE_URL": fake.base_url,
        }
        async with running_roomd(tmp_path, **SERVER_ENV, **im_env) as server:
            room_id = await _seed_era_flow(server)
            with trio.fail_after(20):
                while fake.calls_for(room_id)[-1:] != ["destroy_group"]:  # noqa: ASYNC110 -- FakeIm has no event for it
                    await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    calls = fake.calls_for(room_id)
    assert calls[0] == "create_group" and calls[-1] == "destroy_group"
    assert set(calls[1:-1]) == {"send_group_system_notification"}
    assert fake.rejected_auth == 0 and room_id not in fake.groups
