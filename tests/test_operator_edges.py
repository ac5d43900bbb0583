"""The operator features at their edges: the admin key never logged, receivers never told of a room
that was not made, the event stream limit, one node per webhook lane, receiver URLs checked at
start, saved events kept to their own receiver, and what a local listing of closing rooms shows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel
from loguru import logger

from roomd.actors.messages import CreateRoom, MemberInfo, RoomSaved
from roomd.actors.replies import Refused
from roomd.config.loader import ConfigError
from tests.bodies import joining, member_fields
from tests.cluster_helpers import open_nodes
from tests.conftest import eventually, make_settings, open_roomd
from tests.redis_server import RedisServer
from tests.test_webhooks import SECRET, roomd_with_receiver
from tests.webhook_receiver import start_receiver

KEY = "admin-key-for-tests"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _capture(records: list[str], channel: str | None = None) -> int:
    def sink(message: Any) -> None:
        if channel is None or message.record["extra"].get("channel") == channel:
            records.append(str(message))

    return logger.add(sink, level="DEBUG")


# --- 1. the admin key is written to the response log by a console sign-in --------------------------


async def test_a_console_sign_in_does_not_write_the_admin_key_to_the_response_log() -> None:
    lines: list[str] = []
    sink = _capture(lines, channel="response")
    try:
        async with open_roomd(make_settings(ROOMD_AUTH__ADMIN_KEY=KEY)) as api:
            signed_in = await api.http.post("/console/login", content=f"key={KEY}".encode(), headers=FORM)
            assert signed_in.status_code == 303
    finally:
        logger.remove(sink)
    login_lines = [line for line in lines if "/console/login" in line]
    assert login_lines, "the sign-in has its response-log line"
    assert not any(KEY in line for line in login_lines), login_lines


# --- 2. a creation undone because its caller gave up still tells receivers the room was made -------


async def test_a_creation_whose_caller_gave_up_is_not_told_to_receivers_as_a_room_that_lives(
    tmp_path: Path,
) -> None:
    async with roomd_with_receiver(tmp_path) as (api, receiver):
        store: Any = api.system.store
        write_batch = store._write_batch

        def slow_creations(batch: list[Any]) -> Any:
            if any(isinstance(c, RoomSaved) and c.created for s in batch for c in s.changes):
                time.sleep(0.5)  # a slow disk, while the creator's deadline passes
            return write_batch(batch)

        store._write_batch = slow_creations
        creator = MemberInfo("alice", "a", "", "rtmp://8888.livepush.myqcloud.com/live/8888_alice")
        request = CreateRoom("alice", "r", first_member=creator)
        answer = await api.system.router.create_room("multi_room", request, deadline=trio.current_time() + 0.1)
        await trio.sleep(1.5)  # the write ends, the directory undoes the room, events are delivered
        if not isinstance(answer, Refused):
            return  # the caller waited for the outcome (a fix): the room exists, as its events say
        listed = await api.http.get("/admin/v1/rooms", headers={"Authorization": f"Bearer {KEY}"})
        assert listed.json()["rooms"] == []
        told = [(e["event"], e["room"]) for e in receiver.events]
        made = {room for event, room in told if event == "room_created"}
        closed = {room for event, room in told if event == "room_closed"}
        # either the receiver never hears of it, or it hears that it is gone
        assert made <= closed, told


# --- 3. the limit of 8 event streams is checked before any stream counts itself --------------------


async def test_no_more_than_8_event_streams_run_at_once_even_when_asked_for_together() -> None:
    async with open_roomd(make_settings(ROOMD_AUTH__ADMIN_KEY=KEY)) as api:
        statuses: list[int] = []
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/admin/v1/events",
            "raw_path": b"/admin/v1/events",
            "query_string": b"",
            "headers": [(b"host", b"x"), (b"authorization", f"Bearer {KEY}".encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 5757),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await trio.lowlevel.checkpoint()  # a write to a socket is a checkpoint

        async with trio.open_nursery() as nursery:
            for _ in range(20):  # 20 console tabs opened at once (or one script)
                nursery.start_soon(api.app, dict(scope), receive, send)
            await trio.sleep(0.5)
            running = api.ctx.console_streams
            nursery.cancel_scope.cancel()
        assert running <= 8 and statuses.count(200) <= 8, (running, statuses)


# --- 4. cluster: a lane's lease is not renewed between deliveries, so two nodes deliver it at once --


async def test_a_slow_lane_is_delivered_by_one_node_only_while_both_live(redis: RedisServer) -> None:
    async with trio.open_nursery() as nursery:
        receiver = await start_receiver(nursery, SECRET)
        env = {"ROOMD_WEBHOOKS__URLS": receiver.url, "ROOMD_WEBHOOKS__SECRET": SECRET, "ROOMD_WEBHOOKS__LANES": "1"}
        async with open_nodes(redis.url, 2, **env) as (first, second):
            receiver.delay = 0.6  # each delivery well under a renewal period (1 s with lease_ms 1000)
            room_id = (await first.post("create_room", member_fields("alice", roomName="slow"))).body["roomID"]
            for i in range(4):
                assert (await second.post("add_pusher", joining(f"m{i}", room_id))).code == 0
                assert (await second.post("delete_pusher", {"roomID": room_id, "userID": f"m{i}"})).code == 0
            await eventually(lambda: len({e["id"] for e in receiver.events}) == 10, within=30)
            await trio.sleep(1.0)
        ids = [e["id"] for e in receiver.events]
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events delivered twice, no node died"
        nursery.cancel_scope.cancel()


# --- 5. a receiver URL that httpx cannot parse passes the start and crashes the server later -------


async def test_a_webhook_url_httpx_cannot_parse_is_refused_at_start_or_never_crashes_the_server() -> None:
    try:
        settings = make_settings(ROOMD_WEBHOOKS__URLS="http://[::1/hooks", ROOMD_WEBHOOKS__SECRET=SECRET)
    except ConfigError:
        return  # refused at start, naming the key: what the README promises for a bad value
    async with open_roomd(settings) as api:
        assert (await api.post("create_room", member_fields("alice", roomName="r"))).code == 0
        await trio.sleep(0.5)  # the event's first delivery attempt
        assert (await api.get("/readyz")).status == 200


# --- 6. state=closing lists every open room outside cluster mode -----------------------------------


async def test_listing_closing_rooms_does_not_list_open_ones() -> None:
    async with open_roomd(make_settings(ROOMD_AUTH__ADMIN_KEY=KEY)) as api:
        assert (await api.post("create_room", member_fields("alice", roomName="open"))).code == 0
        listed = await api.http.get("/admin/v1/rooms?state=closing", headers={"Authorization": f"Bearer {KEY}"})
        assert listed.status_code == 400 or [r["state"] for r in listed.json()["rooms"]] == [], listed.json()


# --- 7. events saved for one receiver go to another after the receiver list changes ---------------


async def test_events_saved_for_a_receiver_removed_from_the_list_do_not_go_to_another(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        old = await start_receiver(nursery, SECRET)
        new = await start_receiver(nursery, SECRET)
        old.failing = True
        common = {
            "ROOMD_WEBHOOKS__SECRET": SECRET,
            "ROOMD_SERVER__PERSIST": "true",
            "ROOMD_SERVER__DATA_DIR": str(tmp_path / "data"),
        }
        async with open_roomd(make_settings(ROOMD_WEBHOOKS__URLS=old.url, **common)) as api:
            before = (await api.post("create_room", member_fields("alice", roomName="r"))).body["roomID"]
        async with open_roomd(make_settings(ROOMD_WEBHOOKS__URLS=new.url, **common)) as api:
            after = (await api.post("create_room", member_fields("bob", roomName="r"))).body["roomID"]
            await eventually(lambda: len(new.of_room(after)) == 2, within=10)
            await trio.sleep(0.5)
        assert new.of_room(before) == [], "the new receiver got events saved for the old one"
        nursery.cancel_scope.cancel()
