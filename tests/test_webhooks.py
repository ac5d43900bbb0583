"""Webhooks: every event of a room's life reaches a real loopback receiver, signed, in order per
room, at least once, across a receiver outage and across kill -9 of roomd."""

from __future__ import annotations

import hashlib
import hmac
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from loguru import logger

from roomd.actors.events import OutboxRow
from roomd.actors.messages import EventDelivered
from roomd.actors.webhooks import WebhookSender
from roomd.config import WebhookSettings
from tests.bodies import joining, member_fields
from tests.cluster_helpers import node_in_scope, open_nodes
from tests.conftest import Api, eventually, make_settings, open_roomd
from tests.redis_server import RedisServer
from tests.server_process import running_roomd
from tests.webhook_receiver import Receiver, start_receiver, verify

SECRET = "webhook-secret-for-tests"
ADMIN_KEY = "admin-key-for-tests"


@asynccontextmanager
async def roomd_with_receiver(tmp_path: Path, **env: str) -> AsyncIterator[tuple[Api, Receiver]]:
    async with trio.open_nursery() as nursery:
        receiver = await start_receiver(nursery, SECRET)
        settings = make_settings(
            ROOMD_WEBHOOKS__URLS=receiver.url,
            ROOMD_WEBHOOKS__SECRET=SECRET,
            ROOMD_AUTH__ADMIN_KEY=ADMIN_KEY,
            ROOMD_SERVER__PERSIST="true",
            ROOMD_SERVER__DATA_DIR=str(tmp_path / "data"),
            **env,
        )
        async with open_roomd(settings) as api:
            yield api, receiver
        nursery.cancel_scope.cancel()


def test_the_reference_check_refuses_what_is_not_signed_with_the_secret() -> None:
    body = b'{"id":"evt_1"}'
    good = "t=1700000000,v1=" + hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify(SECRET, good, body)
    assert not verify(SECRET, good, body + b" ")
    assert not verify("other", good, body)
    assert not verify(SECRET, good.replace("t=1700000000", "t=1700000001"), body)
    assert not verify(SECRET, "", body)


async def test_a_rooms_life_arrives_signed_and_in_order(tmp_path: Path) -> None:
    env = {
        "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "1",
        "ROOMD_KINDS__MULTI_ROOM__CREATOR_LEAVE_CLOSES_ROOM": "false",
    }
    async with roomd_with_receiver(tmp_path, **env) as (api, receiver):
        room_id = (await api.post("create_room", member_fields("alice", roomName="life"))).body["roomID"]
        assert (await api.post("add_pusher", joining("bob", room_id))).code == 0
        assert (await api.post("add_pusher", joining("carol", room_id))).code == 0
        assert (await api.post("add_pusher", joining("dave", room_id))).code == 0
        assert (await api.post("delete_pusher", {"roomID": room_id, "userID": "bob"})).code == 0
        kicked = await api.http.delete(
            f"/admin/v1/rooms/multi_room/{room_id}/members/carol", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert kicked.json()["code"] == 0
        for _ in range(8):  # alice stays; dave stops heartbeating and is evicted
            assert (await api.post("pusher_heartbeat", {"roomID": room_id, "userID": "alice"})).code == 0
            await trio.sleep(0.25)
        assert (await api.post("destroy_room", {"roomID": room_id, "userID": "alice"})).code == 0
        assert (await api.post("add_pusher", joining("anchor", "room_live"), kind="live_room")).code == 0
        viewer = {"roomID": "room_live", "userID": "v1", "userInfo": "{}"}
        assert (await api.post("add_audience", viewer, kind="live_room")).code == 0
        assert (await api.post("delete_audience", viewer, kind="live_room")).code == 0
        await eventually(lambda: len(receiver.events) == 14, within=10)
        assert receiver.of_room(room_id) == [
            ("room_created", "alice", None),
            ("member_joined", "alice", None),
            ("member_joined", "bob", None),
            ("member_joined", "carol", None),
            ("member_joined", "dave", None),
            ("member_left", "bob", "left"),
            ("member_left", "carol", "kicked"),
            ("member_left", "dave", "timeout"),
            ("member_left", "alice", "room_closed"),
            ("room_closed", None, "destroyed"),
        ]
        assert receiver.of_room("room_live") == [  # made by its first join
            ("room_created", "anchor", None),
            ("member_joined", "anchor", None),
            ("audience_joined", "v1", None),
            ("audience_left", "v1", "left"),
        ]
        assert receiver.bad_signatures == 0
        first = receiver.events[0]
        assert set(first) == {"id", "event", "time", "kind", "room", "member"}
        assert first["kind"] == "multi_room" and first["id"].startswith("evt_")
        assert len({e["id"] for e in receiver.events}) == len(receiver.events)


@pytest.mark.slow
async def test_a_30_s_outage_of_the_receiver_delays_nothing_and_loses_nothing(tmp_path: Path) -> None:
    env = {"ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "3600", "ROOMD_WEBHOOKS__MAX_BACKOFF": "4"}
    async with roomd_with_receiver(tmp_path, **env) as (api, receiver):
        receiver.failing = True
        rooms = []
        for i in range(6):
            started = trio.current_time()
            rooms.append((await api.post("create_room", member_fields(f"c{i}", roomName="o"))).body["roomID"])
            assert (await api.post("add_pusher", joining(f"m{i}", rooms[-1]))).code == 0
            assert trio.current_time() - started < 1.0  # rooms never wait for the receiver
        await trio.sleep(30)
        assert receiver.events == [] and receiver.refused_ids  # tried, and tried again
        receiver.failing = False
        await eventually(lambda: len({e["id"] for e in receiver.events}) == 18, within=90)
        assert set(receiver.refused_ids) <= {e["id"] for e in receiver.events}  # the same ids, delivered
        for i, room_id in enumerate(rooms):
            arrived = receiver.of_room(room_id)
            firsts = list(dict.fromkeys(arrived))  # at least once: the first arrival of each, in order
            assert firsts == [
                ("room_created", f"c{i}", None),
                ("member_joined", f"c{i}", None),
                ("member_joined", f"m{i}", None),
            ]


async def test_events_saved_before_a_restart_are_delivered_after_it(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        receiver = await start_receiver(nursery, SECRET)
        receiver.failing = True
        settings = make_settings(
            ROOMD_WEBHOOKS__URLS=receiver.url,
            ROOMD_WEBHOOKS__SECRET=SECRET,
            ROOMD_SERVER__PERSIST="true",
            ROOMD_SERVER__DATA_DIR=str(tmp_path / "data"),
        )
        async with open_roomd(settings) as api:
            room_id = (await api.post("create_room", member_fields("alice", roomName="r"))).body["roomID"]
        receiver.failing = False
        async with open_roomd(settings):
            await eventually(lambda: len(receiver.of_room(room_id)) >= 2, within=10)
        assert receiver.of_room(room_id)[:2] == [("room_created", "alice", None), ("member_joined", "alice", None)]
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_kill_9_mid_delivery_loses_no_event(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        receiver = await start_receiver(nursery, SECRET)
        receiver.delay = 0.3  # slow: the kill comes while events wait
        env = {
            "ROOMD_WEBHOOKS__URLS": receiver.url,
            "ROOMD_WEBHOOKS__SECRET": SECRET,
            "ROOMD_WEBHOOKS__LANES": "1",
            "ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS": "0",
            "ROOMD_LIMITS__CREATE_RATE_PER_USER": "0",
            "ROOMD_LIMITS__LOGIN_RATE_PER_ADDRESS": "0",
        }
        made: list[str] = []
        async with running_roomd(tmp_path, **env) as server, httpx.AsyncClient() as http:
            for i in range(10):
                reply = await http.post(
                    f"{server.base_url}/weapp/multi_room/create_room", json=member_fields(f"k{i}", roomName="k")
                )
                assert reply.json()["code"] == 0
                made.append(reply.json()["roomID"])
            await trio.sleep(1.0)
            delivered_before = len(receiver.events)
            server.process.send_signal(signal.SIGKILL)
            await server.process.wait()
        assert 0 < delivered_before < 20
        receiver.delay = 0.0
        async with running_roomd(tmp_path, **env):
            await eventually(lambda: all(len(set(receiver.of_room(r))) == 2 for r in made), within=30)
        nursery.cancel_scope.cancel()


async def test_on_two_nodes_events_come_once_or_more_in_order_even_when_a_node_vanishes(redis: RedisServer) -> None:
    async with trio.open_nursery() as nursery:
        receiver = await start_receiver(nursery, SECRET)
        env = {"ROOMD_WEBHOOKS__URLS": receiver.url, "ROOMD_WEBHOOKS__SECRET": SECRET, "ROOMD_WEBHOOKS__LANES": "2"}
        async with open_nodes(redis.url, 1, **env) as (survivor,):
            async with node_in_scope(redis.url, name="doomed", **env) as (doomed, scope):
                room_id = (await doomed.post("create_room", member_fields("alice", roomName="h"))).body["roomID"]
                assert (await survivor.post("add_pusher", joining("bob", room_id))).code == 0  # forwarded
                await eventually(lambda: len(receiver.of_room(room_id)) == 3, within=10)
                receiver.failing = True  # what comes now waits in Redis
                assert (await survivor.post("delete_pusher", {"roomID": room_id, "userID": "bob"})).code == 0
                await trio.sleep(0.5)
                scope.cancel()  # the node that owns the room, and maybe delivers its lane, is gone
            receiver.failing = False
            await eventually(lambda: ("member_left", "bob", "left") in receiver.of_room(room_id), within=20)
        assert list(dict.fromkeys(receiver.of_room(room_id))) == [
            ("room_created", "alice", None),
            ("member_joined", "alice", None),
            ("member_joined", "bob", None),
            ("member_left", "bob", "left"),
        ]
        assert receiver.bad_signatures == 0
        nursery.cancel_scope.cancel()


class RecordingStore:
    """What the sender asks a store to write (it deletes delivered or dropped rows in the background)."""

    def __init__(self) -> None:
        self.written: list[object] = []

    def write_later(self, changes: list[object], *, about: str) -> None:
        self.written.extend(changes)


def test_a_full_outbox_drops_its_oldest_waiting_events_counts_them_and_says_so_once() -> None:
    store = RecordingStore()
    settings = WebhookSettings(urls=("http://127.0.0.1:9/hooks",), secret="s", max_outbox=3, lanes=1)
    sender = WebhookSender(settings, store)  # type: ignore[arg-type]
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING")
    try:
        sender.accept([OutboxRow(row, 0, "multi_room", "room_a", f'{{"n":{row}}}', 0.0) for row in range(1, 11)])
    finally:
        logger.remove(sink)
    assert sender.outbox_depth == 3 and sender.stats.dropped_full == 7
    # the head (being delivered) stays; the oldest behind it go first: rows 2..8 dropped, 1, 9, 10 kept
    assert [change.row for change in store.written if isinstance(change, EventDelivered)] == [2, 3, 4, 5, 6, 7, 8]
    assert sum("webhook outbox full" in line for line in lines) == 1


async def test_a_receiver_slower_than_the_timeout_is_tried_again_not_waited_for(tmp_path: Path) -> None:
    env = {"ROOMD_WEBHOOKS__TIMEOUT": "0.3", "ROOMD_WEBHOOKS__MAX_BACKOFF": "1"}
    async with roomd_with_receiver(tmp_path, **env) as (api, receiver):
        receiver.delay = 2.0  # answers, but too late every time
        room_id = (await api.post("create_room", member_fields("alice", roomName="slow"))).body["roomID"]
        sender = api.system.webhooks
        assert sender is not None
        await eventually(lambda: sender.stats.failed_attempts >= 2, within=10)
        receiver.delay = 0.0
        await eventually(lambda: ("member_joined", "alice", None) in receiver.of_room(room_id), within=10)
        assert list(dict.fromkeys(receiver.of_room(room_id))) == [
            ("room_created", "alice", None),
            ("member_joined", "alice", None),
        ]


async def test_a_receivers_credentials_reach_neither_the_logs_nor_debug_actors(tmp_path: Path) -> None:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    try:
        async with trio.open_nursery() as nursery:
            receiver = await start_receiver(nursery, SECRET)
            receiver.failing = True
            assert receiver.server is not None
            host = receiver.server.base_url.removeprefix("http://")
            url = f"http://hookuser:hookpass@{host}/hooks/T0SECRETPATH?token=urltoken123"
            settings = make_settings(
                ROOMD_WEBHOOKS__URLS=url, ROOMD_WEBHOOKS__SECRET=SECRET, ROOMD_AUTH__ADMIN_KEY=ADMIN_KEY
            )
            async with open_roomd(settings) as api:
                assert (await api.post("create_room", member_fields("alice", roomName="r"))).code == 0
                await eventually(lambda: len(receiver.refused_ids) >= 1, within=10)
                tree = await api.http.get("/debug/actors", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
                [hooks] = [actor for actor in tree.json()["tree"]["children"] if actor["kind"] == "webhooks"]
                assert [r["url"] for r in hooks["receivers"]] == [f"#1 http://{host}/…"]
            nursery.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    assert any(f"webhook delivery to #1 http://{host}/… failed (HTTP 500)" in line for line in lines)
    shown = "\n".join([*lines, tree.text])
    for secret in ("hookpass", "urltoken123", "T0SECRETPATH"):
        assert secret not in shown
