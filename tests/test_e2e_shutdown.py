"""SIGTERM on a real server process under load: nothing accepted fails, later requests get 503, exit 0."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import trio

from tests.bodies import member_fields
from tests.server_process import running_roomd

pytestmark = pytest.mark.slow

CLIENTS = 24


async def test_sigterm_during_a_stream_of_heartbeats(tmp_path: Path) -> None:
    outcomes: dict[str, int] = {"ok": 0, "503": 0, "refused": 0, "failed": 0}
    failures: list[str] = []
    async with running_roomd(tmp_path, ROOMD_SERVER__DRAIN_GRACE="1.5") as server:
        async with httpx.AsyncClient(base_url=server.base_url) as setup:
            rooms = []
            for i in range(CLIENTS // 4):
                reply = (
                    await setup.post("/weapp/multi_room/create_room", json={**member_fields(f"c{i}"), "roomName": "r"})
                ).json()
                rooms.append(reply["roomID"])
                for j in range(3):
                    await setup.post(
                        "/weapp/multi_room/add_pusher", json={"roomID": reply["roomID"], **member_fields(f"m{i}_{j}")}
                    )
        members = [(room, f"c{i}") for i, room in enumerate(rooms)] + [
            (room, f"m{i}_{j}") for i, room in enumerate(rooms) for j in range(3)
        ]
        readyz_after_signal: list[int] = []
        flowing = trio.Event()  # every client has had two heartbeats answered, on average

        async def heartbeat_forever(room_id: str, user_id: str) -> None:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                while True:
                    try:
                        response = await http.post(
                            "/weapp/multi_room/pusher_heartbeat", json={"roomID": room_id, "userID": user_id}
                        )
                    except httpx.ConnectError:
                        outcomes["refused"] += 1  # never accepted: the listener is closed
                        return
                    except httpx.HTTPError as error:
                        outcomes["failed"] += 1
                        failures.append(f"{type(error).__name__}: {error}")
                        return
                    if response.status_code == 503:
                        assert response.json()["code"] == 12
                        outcomes["503"] += 1
                        return
                    assert response.status_code == 200 and response.json()["code"] == 0
                    outcomes["ok"] += 1
                    if outcomes["ok"] >= 2 * CLIENTS:
                        flowing.set()

        async def terminate_once_flowing() -> None:
            with trio.fail_after(30):
                await flowing.wait()
            server.process.send_signal(signal.SIGTERM)
            await trio.sleep(0.3)
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                readyz_after_signal.append((await http.get("/readyz")).status_code)

        async with trio.open_nursery() as nursery:
            for room_id, user_id in members:
                nursery.start_soon(heartbeat_forever, room_id, user_id)
            nursery.start_soon(terminate_once_flowing)
        with trio.fail_after(30):
            await server.process.wait()
    assert failures == [] and outcomes["failed"] == 0
    assert outcomes["ok"] >= 2 * CLIENTS  # the stream was flowing before the signal
    assert outcomes["503"] == CLIENTS  # every client was told, none was cut off
    assert readyz_after_signal == [503]
    assert server.process.returncode == 0
    # persistence is on by default: rooms are kept for the next start, not closed
    stops = [line for line in server.output if "room stopped" in line]
    assert stops and all("reason=shutdown kept in the store for the next start" in line for line in stops)
    assert len(stops) == len({line.split("|")[2] for line in stops})  # one line per room
