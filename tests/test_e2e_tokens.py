"""Token mode on a real server process: tokens outlive a restart, and so does a logout."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from roomd.qcloud.usersig import HmacUserSigner
from tests.server_process import running_roomd

pytestmark = pytest.mark.slow

ENV = {"ROOMD_AUTH__MODE": "token", "ROOMD_IM__SECRET_KEY": "restart-secret"}


async def test_tokens_survive_a_restart_and_logout_revokes_them_for_good(tmp_path: Path) -> None:
    sig = HmacUserSigner(0, "restart-secret").make("alice", now=int(time.time()), expire=3600)
    async with running_roomd(tmp_path, **ENV) as first, httpx.AsyncClient(base_url=first.base_url) as http:
        login = (
            await http.post("/weapp/multi_room/login", params={"sdkAppID": "0", "userID": "alice", "userSig": sig})
        ).json()
        assert login["code"] == 0
        auth = {"userID": "alice", "token": login["token"]}
        created = (
            await http.post("/weapp/multi_room/create_room", params=auth, json={"userID": "alice", "roomInfo": "r"})
        ).json()
        assert created["code"] == 0
        assert (await http.post("/weapp/multi_room/get_room_list", json={})).json()["code"] == 7
    assert (tmp_path / "data" / "token_secret").exists()
    assert (tmp_path / "data" / "token_secret").stat().st_mode & 0o077 == 0

    async with running_roomd(tmp_path, **ENV) as second, httpx.AsyncClient(base_url=second.base_url) as http:
        listed = (await http.post("/weapp/multi_room/get_room_list", params=auth, json={})).json()
        assert listed["code"] == 0
        assert (await http.post("/weapp/multi_room/logout", params=auth, json={})).json()["code"] == 0
        assert (await http.post("/weapp/multi_room/get_room_list", params=auth, json={})).json()["code"] == 7

    async with running_roomd(tmp_path, **ENV) as third, httpx.AsyncClient(base_url=third.base_url) as http:
        revoked = (await http.post("/weapp/multi_room/get_room_list", params=auth, json={})).json()
        assert revoked["code"] == 7 and "revoked" in revoked["detail"]
    logged = "\n".join(first.output + second.output + third.output)
    response_logs = "".join(p.read_text() for p in (tmp_path / "logs" / "response").glob("*.log"))
    assert login["token"] not in logged and login["token"] not in response_logs
    assert sig not in response_logs and "token=<redacted>" in response_logs
