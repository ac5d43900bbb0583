"""Real roomd processes as a cluster on a real Redis: kill -9, SIGSTOP, a Redis restart, SIGTERM under load."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.bodies import joining, member_fields
from tests.conftest import IM_SDK_APP_ID, IM_SECRET
from tests.fake_im import FakeIm, start_fake_im
from tests.redis_server import RedisServer
from tests.server_process import ServerProcess, running_roomd

pytestmark = pytest.mark.slow

LEASE = 1.0  # seconds (cluster.lease_ms below)


def cluster_env(redis: RedisServer, im: FakeIm, **more: str) -> dict[str, str]:
    return {
        "ROOMD_CLUSTER__REDIS_URL": redis.url,
        "ROOMD_CLUSTER__LEASE_MS": str(int(LEASE * 1000)),
        "ROOMD_CLUSTER__RENEW_INTERVAL": "0.2",
        "ROOMD_CLUSTER__REAP_INTERVAL": "0.1",
        "ROOMD_CLUSTER__REDIS_TIMEOUT": "0.5",
        "ROOMD_IM__SDK_APP_ID": str(IM_SDK_APP_ID),
        "ROOMD_IM__SECRET_KEY": IM_SECRET,
        "ROOMD_IM__BASE_URL": im.base_url,
        "ROOMD_IM__TIMEOUT": "1",
        "ROOMD_SERVER__CALL_TIMEOUT": "3",
        "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "4",
        "ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS": "0",
        "ROOMD_LIMITS__CREATE_RATE_PER_USER": "0",
        "ROOMD_LIMITS__LOGIN_RATE_PER_ADDRESS": "0",
        **more,
    }


@asynccontextmanager
async def cluster(tmp_path: Path, count: int, env: dict[str, str]) -> AsyncIterator[list[ServerProcess]]:
    async with AsyncExitStack() as stack:
        nodes = []
        for i in range(count):
            directory = tmp_path / f"node{i}"
            directory.mkdir()
            nodes.append(
                await stack.enter_async_context(running_roomd(directory, ROOMD_CLUSTER__NODE_NAME=f"n{i}", **env))
            )
        yield nodes


@asynccontextmanager
async def fake_im() -> AsyncIterator[FakeIm]:
    async with trio.open_nursery() as nursery:
        yield await start_fake_im(nursery, FakeIm(IM_SDK_APP_ID, "admin", secret_key=IM_SECRET))
        nursery.cancel_scope.cancel()


async def post(http: httpx.AsyncClient, node: ServerProcess, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await http.post(f"{node.base_url}/weapp/multi_room/{endpoint}", json=body)
    result: dict[str, Any] = reply.json()
    return result


async def owned_rooms(http: httpx.AsyncClient, node: ServerProcess) -> set[str]:
    tree = (await http.get(f"{node.base_url}/debug/actors?limit=1000")).json()["tree"]
    cluster_node = next(child for child in tree["children"] if child["kind"] == "cluster node")
    return set(cluster_node["owned_rooms"]["multi_room"])


async def test_kill_9_of_a_node_under_churn_loses_nothing_acknowledged(tmp_path: Path, redis: RedisServer) -> None:
    async with fake_im() as im, cluster(tmp_path, 3, cluster_env(redis, im)) as nodes, httpx.AsyncClient() as http:
        victim, survivors = nodes[0], nodes[1:]
        rooms = []
        for i in range(8):
            created = await post(http, victim, "create_room", member_fields(f"c{i}", roomName=f"r{i}"))
            assert created["code"] == 0
            rooms.append(created["roomID"])
        assert await owned_rooms(http, victim) == set(rooms)
        acked: dict[str, set[str]] = {room: {f"c{i}"} for i, room in enumerate(rooms)}
        heartbeat_codes: list[int] = []
        stop = trio.Event()

        async def heartbeats() -> None:  # every member, through the survivors, all along
            for n in itertools.count():
                if stop.is_set():
                    return
                for room in rooms:
                    for user in list(acked[room]):
                        node = survivors[n % 2]
                        try:
                            reply = await post(http, node, "pusher_heartbeat", {"roomID": room, "userID": user})
                            heartbeat_codes.append(reply["code"])
                        except httpx.HTTPError:
                            heartbeat_codes.append(-99)
                await trio.sleep(0.5)

        async def churn() -> None:  # joins through every node, the victim included, until it dies
            for n in itertools.count():
                if stop.is_set():
                    return
                room = rooms[n % len(rooms)]
                user = f"j{n}"
                node = nodes[n % 3]
                try:
                    reply = await post(http, node, "add_pusher", joining(user, room))
                except httpx.HTTPError:
                    continue
                if reply["code"] == 0:
                    acked[room].add(user)
                await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(heartbeats)
            nursery.start_soon(churn)
            await trio.sleep(1.5)
            victim.process.kill()
            killed_at = trio.current_time()
            await victim.process.wait()
            answering: dict[str, float] = {}
            while len(answering) < len(rooms) and trio.current_time() - killed_at < 10:
                for room in rooms:
                    if room not in answering:
                        reply = await post(http, survivors[0], "get_pushers", {"roomID": room})
                        if reply["code"] == 0:
                            answering[room] = trio.current_time() - killed_at
                await trio.sleep(0.05)
            await trio.sleep(LEASE * 5)  # heartbeats go on past the members' timeout of 4 s
            stop.set()
        assert len(answering) == len(rooms)
        assert max(answering.values()) < LEASE + 1.0 + 0.5  # lease + 1 s, and this test's polling
        for room in rooms:
            pushers = await post(http, survivors[1], "get_pushers", {"roomID": room})
            assert pushers["code"] == 0, (room, pushers, [line for line in survivors[0].output if room in line][-8:])
            members = {p["userID"] for p in pushers["pushers"]}
            assert members >= acked[room]  # nothing acknowledged is lost; nobody who heartbeats is evicted
        assert set(heartbeat_codes) <= {0, 12, -99}  # busy during the takeover at worst, never 3 or 5
        for room in rooms:
            assert "destroy_group" not in im.calls_for(room)  # IM groups are kept


async def test_a_node_stopped_past_its_lease_comes_back_without_answering_for_lost_rooms(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with (
        fake_im() as im,
        cluster(tmp_path, 2, cluster_env(redis, im)) as (sleeper, other),
        httpx.AsyncClient(timeout=10) as http,
    ):
        room = (await post(http, sleeper, "create_room", member_fields("alice", roomName="s")))["roomID"]
        os.kill(sleeper.process.pid, signal.SIGSTOP)
        try:
            await trio.sleep(LEASE * 2.5)
            assert (await post(http, other, "add_pusher", joining("bob", room)))["code"] == 0
            assert await owned_rooms(http, other) == {room}
            for _ in range(6):  # 3 s more, past the members' heartbeat timeout on the sleeper's clock
                for user in ("alice", "bob"):
                    beat = await post(http, other, "pusher_heartbeat", {"roomID": room, "userID": user})
                    assert beat["code"] == 0
                await trio.sleep(0.5)
        finally:
            os.kill(sleeper.process.pid, signal.SIGCONT)
        # the woken node forwards; it never answers from its own stale copy of the room (in the instant
        # it wakes, before it knows its lease is gone, it may say "busy, retry", as any node may)
        busy: list[str] = []
        for _ in range(30):
            joined = await post(http, sleeper, "add_pusher", joining("carol", room))
            if joined["code"] != 12:
                break
            busy.append(joined.get("detail", ""))
            await trio.sleep(0.1)
        assert joined["code"] == 0, (joined, busy)
        assert len(busy) < 10, busy
        for node in (sleeper, other):
            pushers = await post(http, node, "get_pushers", {"roomID": room})
            assert [p["userID"] for p in pushers["pushers"]] == ["alice", "bob", "carol"]
        assert await owned_rooms(http, sleeper) == set()
        assert any("lease lost" in line for line in sleeper.output)
        await trio.sleep(0.5)
        assert not any("reason=timeout" in line for line in sleeper.output)  # its stale copy evicted nobody
        assert "destroy_group" not in im.calls_for(room)


async def test_while_redis_is_down_changes_are_busy_heartbeats_go_on_and_nodes_reconnect(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with fake_im() as im, cluster(tmp_path, 2, cluster_env(redis, im)) as (a, b), httpx.AsyncClient() as http:
        room = (await post(http, a, "create_room", member_fields("alice", roomName="r")))["roomID"]
        assert (await post(http, b, "add_pusher", joining("bob", room)))["code"] == 0
        assert (await post(http, b, "pusher_heartbeat", {"roomID": room, "userID": "bob"}))["code"] == 0
        redis.stop()
        try:
            for _ in range(12):  # 6 s: past the lease and the members' heartbeat timeout
                started = trio.current_time()
                created = await post(http, a, "create_room", member_fields("x", roomName="x"))
                joined = await post(http, a, "add_pusher", joining("carol", room))
                assert created["code"] == 12 and joined["code"] == 12
                assert trio.current_time() - started < 3 * 2  # each within call_timeout
                assert (await post(http, a, "pusher_heartbeat", {"roomID": room, "userID": "alice"}))["code"] == 0
                assert (await post(http, b, "pusher_heartbeat", {"roomID": room, "userID": "bob"}))["code"] == 0
                await trio.sleep(0.5)
            assert (await http.get(f"{a.base_url}/readyz")).status_code == 503
        finally:
            redis.start()
        deadline = trio.current_time() + 10
        while True:
            joined = await post(http, b, "add_pusher", joining("carol", room))
            if joined["code"] == 0 or trio.current_time() > deadline:
                break
            await trio.sleep(0.2)
        assert joined["code"] == 0
        pushers = await post(http, a, "get_pushers", {"roomID": room})
        assert [p["userID"] for p in pushers["pushers"]] == ["alice", "bob", "carol"]
        assert (await http.get(f"{a.base_url}/readyz")).status_code == 200


async def test_sigterm_of_one_node_under_load_fails_nothing_on_the_others(tmp_path: Path, redis: RedisServer) -> None:
    async with fake_im() as im, cluster(tmp_path, 3, cluster_env(redis, im)) as nodes, httpx.AsyncClient() as http:
        leaving, staying = nodes[0], nodes[1:]
        rooms = [
            (await post(http, leaving, "create_room", member_fields(f"c{i}", roomName=f"r{i}")))["roomID"]
            for i in range(10)
        ]
        codes: list[int] = []
        stop = trio.Event()

        async def load(node: ServerProcess) -> None:
            while not stop.is_set():
                for i, room in enumerate(rooms):
                    reply = await post(http, node, "pusher_heartbeat", {"roomID": room, "userID": f"c{i}"})
                    codes.append(reply["code"])
                    if reply["code"]:
                        details.append(reply.get("detail", ""))

        details: list[str] = []
        async with trio.open_nursery() as nursery:
            for node in staying:
                nursery.start_soon(load, node)
            await trio.sleep(0.5)
            leaving.process.send_signal(signal.SIGTERM)
            stopped_at = trio.current_time()
            while len(await owned_rooms(http, staying[0]) | await owned_rooms(http, staying[1])) < len(rooms):  # noqa: ASYNC110  (polls other processes)
                await trio.sleep(0.02)
            taken_in = trio.current_time() - stopped_at
            await trio.sleep(1.0)
            stop.set()
        assert taken_in < 1.0
        assert codes and set(codes) == {0}, details
