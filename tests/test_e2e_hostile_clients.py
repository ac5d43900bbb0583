"""Hostile clients on a real server process: idle connections, slow senders and oversized
headers do not starve the heartbeats of other clients."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.bodies import member_fields
from tests.server_process import running_roomd

pytestmark = pytest.mark.slow

IDLE, SLOW, HUGE = 200, 30, 10


async def test_hostile_connections_do_not_starve_heartbeats(tmp_path: Path) -> None:
    env = {
        "ROOMD_SERVER__KEEP_ALIVE_TIMEOUT": "2",
        "ROOMD_SERVER__READ_TIMEOUT": "2",
        "ROOMD_SERVER__MAX_CONNECTIONS_PER_ADDRESS": "0",  # 240 hostile connections, all from loopback
    }
    async with running_roomd(tmp_path, **env) as server:
        url = urlsplit(server.base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
            room = (
                await http.post("/weapp/multi_room/create_room", json={**member_fields("alice"), "roomName": "r"})
            ).json()["roomID"]
            closed_by_server = {"idle": 0, "slow": 0, "huge": 0}
            all_closed = trio.Event()

            def count_closed(kind: str) -> None:
                closed_by_server[kind] += 1
                if sum(closed_by_server.values()) >= IDLE + SLOW + HUGE:
                    all_closed.set()

            huge_statuses: list[bytes] = []

            async def idle_connection() -> None:
                stream = await trio.open_tcp_stream(host, port)
                if await stream.receive_some(1024) == b"":
                    count_closed("idle")

            async def slow_sender() -> None:
                stream = await trio.open_tcp_stream(host, port)
                request = b"POST /weapp/multi_room/pusher_heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"
                try:
                    for byte in request:  # one byte every 3 s: slower than read_timeout allows
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(3)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    count_closed("slow")

            async def huge_headers() -> None:
                stream = await trio.open_tcp_stream(host, port)
                try:
                    await stream.send_all(b"POST /weapp/multi_room/get_room_list HTTP/1.1\r\nHost: x\r\nX-Filler: ")
                    for _ in range(25):  # 100 KB of one header, as it trickles in
                        await stream.send_all(b"a" * 4096)
                        await trio.sleep(0.01)
                    answer = await stream.receive_some(4096)
                    huge_statuses.append(answer.split(b"\r\n", 1)[0])
                    while await stream.receive_some(4096):
                        pass
                except (trio.BrokenResourceError, OSError):
                    pass
                count_closed("huge")

            latencies: list[float] = []
            async with trio.open_nursery() as hostile:
                for _ in range(IDLE):
                    hostile.start_soon(idle_connection)
                for _ in range(SLOW):
                    hostile.start_soon(slow_sender)
                for _ in range(HUGE):
                    hostile.start_soon(huge_headers)
                await trio.sleep(0.5)
                end = trio.current_time() + 4
                while trio.current_time() < end:  # a well-behaved client, meanwhile
                    started = trio.current_time()
                    reply = await http.post(
                        "/weapp/multi_room/pusher_heartbeat", json={"roomID": room, "userID": "alice"}
                    )
                    latencies.append(trio.current_time() - started)
                    assert reply.json()["code"] == 0
                with trio.fail_after(15):
                    await all_closed.wait()
    assert len(latencies) > 40  # heartbeats kept flowing: dozens in 4 s
    assert max(latencies) < 1.0
    assert closed_by_server == {"idle": IDLE, "slow": SLOW, "huge": HUGE}  # the server let none linger
    # an oversized header is never served: the server answers 4xx or just closes the connection
    assert not any(status.startswith(b"HTTP/1.1 2") for status in huge_statuses)
