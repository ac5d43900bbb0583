"""kill -9 mid-churn, restart: everything acknowledged before the kill is there afterwards."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import httpx
import pytest
import trio

from tests.bodies import joining, member_fields
from tests.server_process import running_roomd

pytestmark = pytest.mark.slow

ENV = {"ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "30"}  # outlives the restart
ROOMS = 6


async def test_sigkill_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    acked: dict[str, set[str]] = {}
    uncertain: dict[str, set[str]] = {}
    base = {"url": ""}
    heartbeat_codes: list[int] = []
    operations = [0]  # acknowledged joins and leaves
    enough_operations = trio.Event()

    async def keep_creators_alive(stop: trio.Event) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while not stop.is_set():
                for room in list(acked):
                    try:
                        reply = await http.post(
                            f"{base['url']}/weapp/multi_room/pusher_heartbeat",
                            json={"roomID": room, "userID": f"creator_{room}"},
                        )
                        heartbeat_codes.append(reply.json()["code"])
                    except httpx.HTTPError:
                        pass  # the server is down for a moment
                await trio.sleep(0.2)

    async def churn(http: httpx.AsyncClient, room: str) -> None:
        present: list[str] = []
        n = 0
        while True:
            leave = len(present) >= 4 or (len(present) > 1 and random.random() < 0.4)  # rooms hold 6
            user = present.pop(random.randrange(len(present))) if leave else f"u{n}_{room[-4:]}"
            n += 1
            uncertain[room].add(user)
            if leave:
                reply = await http.post("/weapp/multi_room/delete_pusher", json={"roomID": room, "userID": user})
            else:
                reply = await http.post("/weapp/multi_room/add_pusher", json=joining(user, room))
            assert reply.json()["code"] == 0
            uncertain[room].discard(user)
            operations[0] += 1
            if operations[0] >= ROOMS * 15:
                enough_operations.set()
            if leave:
                acked[room].discard(user)
            else:
                acked[room].add(user)
                present.append(user)

    stop_heartbeats = trio.Event()
    async with trio.open_nursery() as outer:
        async with running_roomd(tmp_path, **ENV) as first:
            base["url"] = first.base_url
            async with httpx.AsyncClient(base_url=first.base_url) as http:
                for i in range(ROOMS):
                    room = f"killroom{i}"
                    created = await http.post(
                        "/weapp/multi_room/create_room",
                        json={**member_fields(f"creator_{room}"), "roomName": "r", "roomID": room},
                    )
                    assert created.json()["code"] == 0
                    acked[room], uncertain[room] = {f"creator_{room}"}, set()
            outer.start_soon(keep_creators_alive, stop_heartbeats)
            async with httpx.AsyncClient(base_url=first.base_url, timeout=5) as http, trio.open_nursery() as workers:
                for room in acked:

                    async def guarded(room: str = room) -> None:
                        with contextlib.suppress(httpx.HTTPError, AssertionError):  # the kill came mid-request
                            await churn(http, room)

                    workers.start_soon(guarded)
                with trio.fail_after(60):
                    await enough_operations.wait()
                first.process.kill()  # SIGKILL: no chance to flush anything
                await first.process.wait()
        assert first.process.returncode == -9

        async with running_roomd(tmp_path, **ENV) as second:
            base["url"] = second.base_url
            async with httpx.AsyncClient(base_url=second.base_url) as http:
                listed = (await http.post("/weapp/multi_room/get_room_list", json={"cnt": 100})).json()["rooms"]
                assert {r["roomID"] for r in listed} == set(acked)
                for room, expected in acked.items():
                    reply = (await http.post("/weapp/multi_room/get_pushers", json={"roomID": room})).json()
                    present = {p["userID"] for p in reply["pushers"]}
                    assert present - uncertain[room] == expected - uncertain[room], room
                await trio.sleep(1.0)  # heartbeats keep flowing after the restart
            stop_heartbeats.set()
    assert any("room restored" in line for line in second.output)
    assert 5 not in heartbeat_codes and 3 not in heartbeat_codes  # nobody heartbeating was evicted
    assert heartbeat_codes.count(0) > ROOMS * 2
