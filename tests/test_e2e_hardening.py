"""Attacks on a real roomd process: poisoned text, a failing disk, ops routes, identities that
are not the caller's, creation floods, and a create_room that races its own deadline."""

from __future__ import annotations

import json
import resource
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from roomd.qcloud.usersig import HmacUserSigner, decode_sig, encode_sig
from tests.bodies import member_fields
from tests.conftest import eventually
from tests.fake_im import FakeIm, start_fake_im
from tests.fake_wechat import FakeWechat, start_fake_wechat
from tests.file_limits import set_file_size_limit
from tests.server_process import ServerProcess, failing_roomd, running_roomd

pytestmark = pytest.mark.slow

SDK_APP_ID = 1400000009
IM_SECRET = "e2e-im-secret-7d1c"
PREFIX = "/weapp/multi_room"
NO_LIMITS = {
    "ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS": "0",
    "ROOMD_LIMITS__CREATE_RATE_PER_USER": "0",
    "ROOMD_LIMITS__LOGIN_RATE_PER_ADDRESS": "0",
}


async def post_raw(http: httpx.AsyncClient, endpoint: str, text: str, query: str = "") -> dict[str, Any]:
    """POST a JSON text as it is (json= in httpx cannot send a lone surrogate escape)."""
    reply = await http.post(
        f"{PREFIX}/{endpoint}{query}", content=text.encode("utf-8"), headers={"Content-Type": "application/json"}
    )
    body: dict[str, Any] = reply.json()
    return body


async def post(http: httpx.AsyncClient, endpoint: str, body: dict[str, Any], query: str = "") -> dict[str, Any]:
    reply = await http.post(f"{PREFIX}/{endpoint}{query}", json=body)
    answer: dict[str, Any] = reply.json()
    answer["http_status"] = reply.status_code
    return answer


async def members(http: httpx.AsyncClient, room_id: str, query: str = "") -> list[str] | None:
    reply = await post(http, "get_pushers", {"roomID": room_id}, query)
    if reply["code"] != 0:
        return None
    return [p["userID"] for p in reply["pushers"]]


@asynccontextmanager
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as http:
        yield http


# --- 1. no input can stop the process or poison a room ------------------------------------

SURROGATE = '"\\ud800"'  # JSON text for a lone surrogate: valid JSON, not encodable as UTF-8


def _poisoned(body: dict[str, Any], field: str) -> str:
    text = json.dumps({**body, field: "PLACEHOLDER"})
    return text.replace('"PLACEHOLDER"', SURROGATE)


@pytest.mark.parametrize("mode", ["open", "token"])
@pytest.mark.parametrize("persist", ["true", "false"])
async def test_lone_surrogates_in_any_field_are_code_1_and_change_nothing(
    tmp_path: Path, mode: str, persist: str
) -> None:
    env = {"ROOMD_AUTH__MODE": mode, "ROOMD_SERVER__PERSIST": persist, "ROOMD_LIVE__BIZID": "8888", **NO_LIMITS}
    async with running_roomd(tmp_path, **env) as server, client(server) as http:
        login = await post(http, "get_im_login_info", {})
        me = login["userID"]
        query = f"?userID={me}&token={login['token']}" if mode == "token" else ""
        push = (await post(http, "get_push_url", {"userID": me}, query))["pushURL"]
        seed = {**member_fields(me), "pushURL": push, "roomName": "r"}
        room = (await post(http, "create_room", seed, query))["roomID"]
        joining = {**member_fields(me), "pushURL": push, "roomID": room, "roomInfo": "r"}
        for endpoint, body, fields in [
            ("create_room", seed, ["userName", "userAvatar", "pushURL", "roomName", "roomID", "userID"]),
            ("create_room", {"userID": me, "roomInfo": "x"}, ["roomInfo", "roomID", "userID"]),
            ("add_pusher", joining, ["userName", "userAvatar", "pushURL", "roomInfo", "roomID", "userID"]),
        ]:
            for field in fields:
                answer = await post_raw(http, endpoint, _poisoned(body, field), query)
                # in token mode a body userID that is not the token's is refused first, as acting for another
                expected = 7 if (mode == "token" and field == "userID") else 1
                assert answer["code"] == expected, (endpoint, field, answer)
                assert (field if expected == 1 else "may not act for") in answer["detail"], answer
        # nothing changed, and the process still serves the room
        assert await members(http, room, query) == [me]
        assert (await post(http, "pusher_heartbeat", {"roomID": room, "userID": me}, query))["code"] == 0
        listing = await post(http, "get_room_list", {}, query)
        assert [r["roomID"] for r in listing["rooms"]] == [room]
    assert server.process.returncode == 0  # stopped by SIGTERM, cleanly
    assert not server.lines_about("Traceback")


async def test_a_full_disk_fails_changes_with_code_12_and_service_resumes(tmp_path: Path) -> None:
    async with running_roomd(tmp_path, ROOMD_SERVER__PERSIST="true", **NO_LIMITS) as server, client(server) as http:
        room = (await post(http, "create_room", {**member_fields("alice"), "roomName": "r"}))["roomID"]
        assert (await post(http, "add_pusher", {**member_fields("bob"), "roomID": room}))["code"] == 0
        pid = server.process.pid
        set_file_size_limit(pid, 1)  # from now on every file write of the process fails (EFBIG)
        try:
            for endpoint, body in [
                ("add_pusher", {**member_fields("carol"), "roomID": room}),
                ("delete_pusher", {"roomID": room, "userID": "bob"}),
                ("destroy_room", {"roomID": room, "userID": "alice"}),
                ("create_room", {**member_fields("dave"), "roomName": "d"}),
            ]:
                answer = await post(http, endpoint, body)
                assert answer["code"] == 12 and answer["http_status"] == 503, (endpoint, answer)
                assert "could not be saved" in answer["detail"]
            # reads and heartbeats are not writes: they keep working
            assert (await post(http, "pusher_heartbeat", {"roomID": room, "userID": "bob"}))["code"] == 0
            assert await members(http, room) == ["alice", "bob"]
            assert [r["roomID"] for r in (await post(http, "get_room_list", {}))["rooms"]] == [room]
        finally:
            set_file_size_limit(pid, resource.RLIM_INFINITY)
        # space is back: the same requests succeed without a restart
        assert (await post(http, "add_pusher", {**member_fields("carol"), "roomID": room}))["code"] == 0
        assert (await post(http, "delete_pusher", {"roomID": room, "userID": "bob"}))["code"] == 0
        assert await members(http, room) == ["alice", "carol"]
        assert (await post(http, "create_room", {**member_fields("dave"), "roomName": "d"}))["code"] == 0
    assert server.process.returncode == 0


async def test_a_database_another_process_locks_fails_those_changes_and_the_next_ones_succeed(tmp_path: Path) -> None:
    """A SQLite error that is not a full disk ("database is locked": another process holds the
    write lock past the 5 s busy timeout) while callers' deadlines pass during the write: each
    change is answered by what happened to it, and nothing half-made stays behind."""
    env = {"ROOMD_SERVER__PERSIST": "true", "ROOMD_SERVER__CALL_TIMEOUT": "3", "ROOMD_IM__TIMEOUT": "2", **NO_LIMITS}
    async with running_roomd(tmp_path, **env) as server, client(server) as http:
        room = (await post(http, "create_room", {**member_fields("alice"), "roomName": "r"}))["roomID"]
        other = (await post(http, "create_room", {**member_fields("carol"), "roomName": "o"}))["roomID"]
        locker = sqlite3.connect(tmp_path / "data" / "rooms.sqlite3", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        answers: dict[str, dict[str, Any]] = {}
        try:
            async with trio.open_nursery() as callers:

                async def call(name: str, endpoint: str, body: dict[str, Any]) -> None:
                    answers[name] = await post(http, endpoint, body)

                callers.start_soon(call, "join", "add_pusher", {**member_fields("bob"), "roomID": room})
                callers.start_soon(call, "create", "create_room", {**member_fields("dave"), "roomName": "d"})
                # other rooms do not wait for these writes (the room written to answers after its write)
                await trio.sleep(0.5)
                with trio.fail_after(1):
                    assert (await post(http, "pusher_heartbeat", {"roomID": other, "userID": "carol"}))["code"] == 0
                    assert await members(http, other) == ["carol"]
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        for name, answer in answers.items():  # past the caller's 3 s: told what happened to its change
            assert answer["code"] == 12 and "could not be saved" in answer["detail"], (name, answer)
        assert await members(http, room) == ["alice"]
        assert sorted(r["roomID"] for r in (await post(http, "get_room_list", {}))["rooms"]) == sorted([room, other])
        # the lock is gone: the same changes succeed, without a restart
        assert (await post(http, "add_pusher", {**member_fields("bob"), "roomID": room}))["code"] == 0
        assert (await post(http, "create_room", {**member_fields("dave"), "roomName": "d"}))["code"] == 0
        assert await members(http, room) == ["alice", "bob"]
    assert server.process.returncode == 0
    assert not server.lines_about("Traceback")


ADMIN_KEY = "adm1n-k3y-7c0d"

# --- 2. client errors are client errors -----------------------------------------------------


async def test_malformed_numbers_nesting_and_tokens_are_client_errors_without_stack_traces(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, FakeIm(SDK_APP_ID, "admin", secret_key=IM_SECRET))
        env = {
            "ROOMD_AUTH__MODE": "token",
            "ROOMD_IM__SECRET_KEY": IM_SECRET,
            "ROOMD_IM__SDK_APP_ID": str(SDK_APP_ID),
            "ROOMD_IM__BASE_URL": fake.base_url,
            "ROOMD_LIVE__PUSH_SECRET_KEY": "push-key-5e1f",
            "ROOMD_LIVE__BIZID": "8888",
            "ROOMD_AUTH__ADMIN_KEY": ADMIN_KEY,
        }
        async with running_roomd(tmp_path, **env) as server, client(server) as http:
            login = await post(http, "get_im_login_info", {})
            me, token = login["userID"], login["token"]
            query = f"?userID={me}&token={token}"
            push = (await post(http, "get_push_url", {"userID": me}, query))["pushURL"]
            room = await post(http, "create_room", {**member_fields(me), "pushURL": push, "roomName": "r"}, query)
            assert room["code"] == 0  # IM was called with the administrator's UserSig
            pushers = await post(http, "get_pushers", {"roomID": room["roomID"]}, query)
            for text, code in [
                ("{", 1),
                ('{"roomID": "r", }', 1),
                ("[" * 100_000 + "]" * 100_000, 1),
                ('{"index": ' + "9" * 5000 + "}", 1),
                ('{"cnt": "\u00b2"}', 1),
                ('{"index": "' + "9" * 5000 + '"}', 1),
                ('{"index": "\uff11"}', 1),
                ('{"cnt": 1e999}', 1),
                ('{"index": -1}', 1),
            ]:
                answer = await post_raw(http, "get_room_list", text, query)
                assert answer["code"] == code, (text[:40], answer)
            for bad_token in ["\uff11" + token, "0" + token, token + "\u00e9", "\u00b2.ab.cd"]:
                answer = await post(http, "get_room_list", {}, f"?userID={me}&token={bad_token}")
                assert answer["code"] == 7, (bad_token, answer)
            sig = HmacUserSigner(SDK_APP_ID, IM_SECRET).make(me, now=2_000_000_000, expire=86400)
            inner = decode_sig(sig)
            assert inner is not None
            non_ascii_inside = encode_sig({**inner, "TLS.sig": "\u00e9\uff11" + str(inner["TLS.sig"])})
            for bad_sig in [sig + "\u00e9", "\u00e9" * 40, sig[:10] + "\uff3f" + sig[10:], non_ascii_inside]:
                answer = await post(http, "login", {"userID": me, "userSig": bad_sig})
                assert answer["code"] == 7, (bad_sig, answer)
            reply = await http.get("/debug/actors?limit=\u00b2", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert reply.json()["code"] == 1
            for key in (ADMIN_KEY, ADMIN_KEY + "\u00e9", "\uff11" + ADMIN_KEY):  # the key, and near misses
                await http.get("/metrics", headers={"Authorization": f"Bearer {key}".encode()})
        nursery.cancel_scope.cancel()
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*.log"))
    console = "\n".join(server.output)
    errors = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("error-*.log"))
    assert "Traceback" not in errors and "unexpected error" not in errors
    assert not server.lines_about("Traceback")
    admin_sigs = {call.query["usersig"] for call in fake.calls}
    tx_secrets = {
        url.split("txSecret=")[1].split("&")[0] for url in [push, *(p["accelerateURL"] for p in pushers["pushers"])]
    }
    assert admin_sigs and tx_secrets
    token_secret = (tmp_path / "data" / "token_secret").read_text().strip()
    for secret in [IM_SECRET, "push-key-5e1f", ADMIN_KEY, token_secret, token, *admin_sigs, *tx_secrets]:
        assert secret not in logs and secret not in console, secret
    assert "txSecret=" not in logs.replace("txSecret=<redacted>", "")


# --- 3. ops routes are closed by default --------------------------------------------------


OPS_ROUTES = [
    "/metrics",
    "/debug/actors",
    "/weapp/utils/logfilelist",
    "/weapp/utils/check_config",
    "/weapp/utils/getlogfile?file=app/",  # + the name of a log file that exists
]


async def ops_routes(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> list[str]:
    """OPS_ROUTES, getlogfile naming a file the server has written (any name, if it may not list them)."""
    listed = (await http.get("/weapp/utils/logfilelist", headers=headers)).json().get("files", [])
    names = [f["file"] for f in listed if f["file"].startswith("app/")]
    first = names[0][len("app/") :] if names else "app-2026-01-01-00.log"
    return [route + first if route.endswith("app/") else route for route in OPS_ROUTES]


async def test_ops_routes_answer_only_allowed_addresses_or_the_admin_key(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    async with running_roomd(tmp_path / "a") as server, client(server) as http:
        for route in await ops_routes(http):  # loopback is allowed by default
            assert (await http.get(route)).status_code == 200, route
    async with (
        running_roomd(tmp_path / "b", ROOMD_OPS__ALLOW="10.0.0.0/8,192.168.0.0/16") as server,
        client(server) as http,
    ):
        for route in await ops_routes(http):
            reply = await http.get(route)
            assert reply.status_code == 403 and reply.json()["code"] == 7, route
            assert "ops.allow" in reply.json()["detail"]
        assert (await http.get("/healthz")).status_code == 200  # probes stay open
    async with running_roomd(tmp_path / "c", ROOMD_AUTH__ADMIN_KEY="k3y-for-ops") as server, client(server) as http:
        for route in await ops_routes(http, {"Authorization": "Bearer k3y-for-ops"}):
            assert (await http.get(route)).json()["code"] == 7, route
            assert (await http.get(route, headers={"Authorization": "Bearer wrong"})).status_code == 401
            assert (await http.get(route, headers={"Authorization": "Bearer k3y-for-ops"})).status_code == 200


async def test_debug_actors_shows_at_most_1000_rooms_per_kind(tmp_path: Path) -> None:
    env = {
        **NO_LIMITS,
        "ROOMD_KINDS__MULTI_ROOM__MAX_WAITING_ROOMS": "0",
        "ROOMD_KINDS__MULTI_ROOM__MAX_ROOMS_PER_CREATOR": "0",
        "ROOMD_SERVER__PERSIST": "false",
    }
    async with running_roomd(tmp_path, **env) as server, client(server) as http:
        for _ in range(1005):
            assert (await post(http, "create_room", {"userID": "alice", "roomInfo": "x"}))["code"] == 0
        tree = (await http.get("/debug/actors?limit=999999999")).json()["tree"]
        [multi] = [c for c in tree["children"] if c.get("path") == "root/multi_room"]
        assert multi["rooms"] == 1005 and len(multi["children"]) == 1000


# --- 4. no credentials for identities a caller does not own -----------------------------------


async def test_reserved_identities_get_no_user_sig(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        # a WeChat openid is an identity roomd signs for: one that is reserved gets nothing either
        wechat = await start_fake_wechat(nursery, FakeWechat("wx-app", "wx-secret", {"c1": "bot_1", "c2": "o_alice"}))
        env = {
            "ROOMD_IM__RESERVED_IDENTIFIERS": "bot_1,ops_root",
            "ROOMD_IM__ADMINISTRATOR": "im_admin",
            "ROOMD_WECHAT__APP_ID": "wx-app",
            "ROOMD_WECHAT__APP_SECRET": "wx-secret",
            "ROOMD_WECHAT__BASE_URL": wechat.base_url,
        }
        async with running_roomd(tmp_path, **env) as server, client(server) as http:
            for user_id in ("im_admin", "bot_1", "ops_root"):
                reply = (await http.get(f"/weapp/utils/get_login_info?userID={user_id}")).json()
                assert reply["code"] == 7 and "userSig" not in reply, reply
            assert (await http.get("/weapp/utils/get_login_info?userID=alice")).json()["code"] == 0
            # nor a token: a userSig of the administrator (made elsewhere) does not log in to roomd
            refused = await post(http, "login", {"userID": "im_admin", "userSig": "x"})
            assert refused["code"] == 7 and "reserved" in refused["detail"]
            reserved = await post(http, "get_im_login_info", {"userIDPrefix": "weixin", "code": "c1"})
            assert reserved["code"] == 7 and "userSig" not in reserved and "bot_1" in reserved["detail"], reserved
            allowed = await post(http, "get_im_login_info", {"userIDPrefix": "weixin", "code": "c2"})
            assert allowed["code"] == 0 and allowed["userID"] == "o_alice" and allowed["userSig"]
        nursery.cancel_scope.cancel()


async def test_accelerate_urls_go_only_to_members_and_expire_within_the_hour(tmp_path: Path) -> None:
    env = {"ROOMD_AUTH__MODE": "token", "ROOMD_LIVE__BIZID": "8888", "ROOMD_LIVE__PUSH_SECRET_KEY": "pk"}
    async with running_roomd(tmp_path, **env) as server, client(server) as http:
        users = []
        for _ in range(3):
            login = await post(http, "get_im_login_info", {})
            query = f"?userID={login['userID']}&token={login['token']}"
            push = (await post(http, "get_push_url", {"userID": login["userID"]}, query))["pushURL"]
            users.append((login["userID"], query, push))
        (alice, alice_q, alice_push), (bob, bob_q, bob_push), (eve, eve_q, _) = users
        room = (
            await post(http, "create_room", {**member_fields(alice), "pushURL": alice_push, "roomName": "r"}, alice_q)
        )["roomID"]
        # nobody creates or joins with a pushURL for somebody else's stream (it would sign that stream)
        foreign = await post(http, "create_room", {**member_fields(eve), "pushURL": alice_push, "roomName": "e"}, eve_q)
        assert foreign["code"] == 1 and "pushURL" in foreign["detail"]
        assert [r["roomID"] for r in (await post(http, "get_room_list", {}, eve_q))["rooms"]] == [room]
        stolen = await post(http, "add_pusher", {**member_fields(bob), "pushURL": alice_push, "roomID": room}, bob_q)
        assert stolen["code"] == 1 and "pushURL" in stolen["detail"]
        assert (await post(http, "add_pusher", {**member_fields(bob), "pushURL": bob_push, "roomID": room}, bob_q))[
            "code"
        ] == 0
        as_member = await post(http, "get_pushers", {"roomID": room}, bob_q)
        urls = [p["accelerateURL"] for p in as_member["pushers"]]
        assert all(u.startswith("rtmp://8888.liveplay.myqcloud.com/live/8888_") for u in urls)
        tx_time = int(urls[0].rsplit("txTime=", 1)[1], 16)
        assert 0 < tx_time - trio_wall() <= 3600 + 60
        as_outsider = await post(http, "get_pushers", {"roomID": room}, eve_q)
        assert [p["accelerateURL"] for p in as_outsider["pushers"]] == ["", ""]
        listing = await post(http, "get_room_list", {}, eve_q)
        assert "txSecret" not in json.dumps(listing)
    (tmp_path / "open").mkdir()
    async with running_roomd(tmp_path / "open", ROOMD_LIVE__BIZID="8888") as server, client(server) as http:
        room = (await post(http, "create_room", {**member_fields("alice"), "roomName": "r"}))["roomID"]
        # open mode keeps the old clients' behaviour: any stream, anyone reads get_pushers
        foreign = {**member_fields("bob"), "pushURL": "rtmp://x/live/8888_alice", "roomID": room}
        assert (await post(http, "add_pusher", foreign))["code"] == 0
        pushers = (await post(http, "get_pushers", {"roomID": room}))["pushers"]
        assert all(p["accelerateURL"].startswith("rtmp://") for p in pushers) and len(pushers) == 2
        assert "txSecret" not in json.dumps(await post(http, "get_room_list", {}))


def trio_wall() -> float:
    import time

    return time.time()


# --- 8. creation cannot be flooded --------------------------------------------------------


async def test_creation_is_rate_limited_and_capped(tmp_path: Path) -> None:
    env = {
        "ROOMD_LIMITS__CREATE_RATE_PER_USER": "0.001",
        "ROOMD_LIMITS__CREATE_BURST_PER_USER": "3",
        "ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS": "0.001",
        "ROOMD_LIMITS__CREATE_BURST_PER_ADDRESS": "20",
        "ROOMD_KINDS__MULTI_ROOM__MAX_WAITING_ROOMS": "5",
        "ROOMD_KINDS__MULTI_ROOM__MAX_ROOMS_PER_CREATOR": "2",
        "ROOMD_SERVER__PERSIST": "false",
    }
    async with running_roomd(tmp_path, **env) as server, client(server) as http:

        async def create(user_id: str, *, waiting: bool = False) -> dict[str, Any]:
            body = {"userID": user_id, "roomInfo": "w"} if waiting else {**member_fields(user_id), "roomName": "r"}
            return await post(http, "create_room", body)

        first, second = await create("alice"), await create("alice")
        assert first["code"] == second["code"] == 0
        for _ in range(3):  # a creator holds at most 2 open rooms; a refused creation spends nothing
            capped = await create("alice")
            assert (capped["code"], capped["http_status"]) == (12, 429) and "max_rooms_per_creator" in capped["detail"]
        assert (await post(http, "destroy_room", {"roomID": first["roomID"], "userID": "alice"}))["code"] == 0
        third = await create("alice")  # the third of a burst of 3
        assert third["code"] == 0
        assert (await post(http, "destroy_room", {"roomID": third["roomID"], "userID": "alice"}))["code"] == 0
        limited = await create("alice")
        assert (limited["code"], limited["http_status"]) == (12, 429)
        assert "user alice creates rooms faster than 0.001 per second" in limited["detail"]
        # waiting rooms are capped per kind, whoever creates them
        assert [(await create(f"w{i}", waiting=True))["code"] for i in range(5)] == [0] * 5
        too_many = await create("w5", waiting=True)
        assert (too_many["code"], too_many["http_status"]) == (12, 429) and "max_waiting_rooms" in too_many["detail"]
        # one address creates at most 20 in a burst: 3 by alice and 5 by w0..w4 are spent
        made = [await create(f"v{i}") for i in range(13)]
        assert [m["code"] for m in made] == [0] * 12 + [12]
        assert "client 127.0.0.1 creates rooms faster" in made[-1]["detail"]
        listing = await post(http, "get_room_list", {"cnt": 100})
        assert [r["roomID"] for r in listing["rooms"]] == [second["roomID"], *(m["roomID"] for m in made[:12])]


async def test_credentials_are_rate_limited_per_client_address(tmp_path: Path) -> None:
    """userSigs, tokens and console logins: a burst per address, then code 12 (HTTP 429) until the
    bucket refills; what was issued stays valid, and other addresses are not affected."""
    env = {
        "ROOMD_AUTH__MODE": "token",
        "ROOMD_AUTH__ADMIN_KEY": ADMIN_KEY,
        "ROOMD_IM__SECRET_KEY": IM_SECRET,
        "ROOMD_IM__SDK_APP_ID": str(SDK_APP_ID),
        "ROOMD_LIMITS__LOGIN_RATE_PER_ADDRESS": "0.001",
        "ROOMD_LIMITS__LOGIN_BURST_PER_ADDRESS": "4",
        "ROOMD_SERVER__PERSIST": "false",
    }
    async with running_roomd(tmp_path, **env) as server, client(server) as http:
        first = await post(http, "get_im_login_info", {})
        second = await post(http, "get_im_login_info", {"userIDPrefix": "p"})
        fresh = (await http.get("/weapp/utils/get_login_info")).json()
        logged_in = await post(http, "login", {"userID": first["userID"], "userSig": first["userSig"]})
        assert [first["code"], second["code"], fresh["code"], logged_in["code"]] == [0, 0, 0, 0]
        detail = "client 127.0.0.1 asks for credentials faster than 0.001 per second (bursts of 4); retry in"
        refused = [
            await post(http, "get_im_login_info", {}),
            await post(http, "login", {"userID": first["userID"], "userSig": first["userSig"]}),
        ]
        reply = await http.get("/weapp/utils/get_login_info")
        refused.append({**reply.json(), "http_status": reply.status_code})
        for answer in refused:
            assert (answer["code"], answer["http_status"]) == (12, 429), answer
            assert answer["detail"].startswith(detail), answer
        console = await http.post("/console/login", content=b"key=" + ADMIN_KEY.encode())
        assert console.status_code == 429 and detail in console.text and "set-cookie" not in console.headers
        # what was handed out before still works, and a logout is not a credential
        for user_id, token in [(first["userID"], first["token"]), (logged_in["userID"], logged_in["token"])]:
            listing = await post(http, "get_room_list", {}, f"?userID={user_id}&token={token}")
            assert listing["code"] == 0, listing
        assert (await post(http, "logout", {}, f"?userID={first['userID']}&token={first['token']}"))["code"] == 0
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")  # another client address
        async with httpx.AsyncClient(base_url=server.base_url, transport=transport, timeout=15) as other:
            assert (await post(other, "get_im_login_info", {}))["code"] == 0
    assert not server.lines_about("Traceback")


# --- 12. create_room's answer matches what happened ------------------------------------


async def test_call_timeout_must_exceed_im_timeout_plus_grace(tmp_path: Path) -> None:
    for call_timeout in ("5", "5.5"):  # im.timeout 5 + the 0.5 s create grace: 5.5 is not enough
        failed = await failing_roomd(tmp_path, ROOMD_SERVER__CALL_TIMEOUT=call_timeout, ROOMD_IM__TIMEOUT="5")
        assert failed.returncode == 2
        said = [line for line in failed.output if "server.call_timeout" in line]
        assert len(said) == 1 and "must exceed im.timeout" in said[0], failed.output
        assert not any("Traceback" in line for line in failed.output)


async def test_a_create_confirmed_just_before_im_timeout_is_answered_0(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, FakeIm(SDK_APP_ID, "admin", secret_key=IM_SECRET))
        # around im.timeout: some confirmations land just before it, some just after; the
        # early ones make sure some rooms are made even on a loaded machine
        fake.behave(
            mode="ok", delays=(0.5, 0.95, 0.98, 0.99, 0.995, 1.0, 1.005, 1.01, 1.05, 0.7), only_api="create_group"
        )
        env = {
            "ROOMD_IM__SDK_APP_ID": str(SDK_APP_ID),
            "ROOMD_IM__SECRET_KEY": IM_SECRET,
            "ROOMD_IM__BASE_URL": fake.base_url,
            "ROOMD_IM__TIMEOUT": "1",
            "ROOMD_SERVER__CALL_TIMEOUT": "1.6",
            **NO_LIMITS,
        }
        async with running_roomd(tmp_path, **env) as server, client(server) as http:
            answers = []
            async with trio.open_nursery() as creators:

                async def create(i: int) -> None:
                    answers.append(await post(http, "create_room", {**member_fields(f"u{i}"), "roomName": "r"}))

                for i in range(10):
                    creators.start_soon(create, i)
            listed = {r["roomID"] for r in (await post(http, "get_room_list", {"cnt": 100}))["rooms"]}
            created = {a["roomID"] for a in answers if a["code"] == 0}
            assert created == listed  # every room that exists was answered 0, and only those
            assert all(a["code"] in (0, 6) for a in answers), answers
            assert created, answers
            # and IM keeps a group for exactly those rooms: groups made for creations answered 6 are destroyed
            try:
                await eventually(lambda: set(fake.groups) == created, within=10)
            except trio.TooSlowError:
                calls = [(c.api, c.body.get("GroupId"), c.answered) for c in fake.calls]
                raise AssertionError(f"IM groups {sorted(fake.groups)} for rooms {sorted(created)}: {calls}") from None
        nursery.cancel_scope.cancel()


# --- 7. a room list page is bounded in bytes -------------------------------------------------


async def test_room_list_pages_are_cut_to_max_reply_bytes(tmp_path: Path) -> None:
    env = {**NO_LIMITS, "ROOMD_SERVER__MAX_REPLY_BYTES": "8192", "ROOMD_KINDS__MULTI_ROOM__MAX_ROOMS_PER_CREATOR": "0"}
    async with running_roomd(tmp_path, **env) as server, client(server) as http:
        made = []
        for i in range(12):
            body = {**member_fields(f"u{i}"), "userAvatar": "https://a.test/" + "x" * 1000, "roomName": "i" * 1000}
            made.append((await post(http, "create_room", body))["roomID"])
        seen: list[str] = []
        index = 0
        while index < len(made):
            reply = await http.post(f"{PREFIX}/get_room_list", json={"index": index, "cnt": 100})
            assert len(reply.content) <= 8192
            page = reply.json()
            assert page["code"] == 0 and page["rooms"]
            assert page.get("truncated") is (index + len(page["rooms"]) < len(made) or None)
            seen += [r["roomID"] for r in page["rooms"]]
            index += len(page["rooms"])
        assert seen == made  # cut pages lose nothing: the next index continues where one stopped
        small = await post(http, "get_room_list", {"cnt": 2})
        assert "truncated" not in small and len(small["rooms"]) == 2


async def test_one_address_holds_at_most_max_rooms_per_address(tmp_path: Path) -> None:
    env = {**NO_LIMITS, "ROOMD_KINDS__MULTI_ROOM__MAX_ROOMS_PER_ADDRESS": "3", "ROOMD_SERVER__PERSIST": "false"}
    async with running_roomd(tmp_path, **env) as server, client(server) as http:
        made = [await post(http, "create_room", {**member_fields(f"u{i}"), "roomName": "r"}) for i in range(4)]
        assert [m["code"] for m in made] == [0, 0, 0, 12]
        assert made[3]["http_status"] == 429 and "max_rooms_per_address" in made[3]["detail"]
        assert (await post(http, "delete_pusher", {"roomID": made[0]["roomID"], "userID": "u0"}))["code"] == 0
        again = await post(http, "create_room", {**member_fields("u9"), "roomName": "r"})
        assert again["code"] == 0  # the room that closed no longer counts
