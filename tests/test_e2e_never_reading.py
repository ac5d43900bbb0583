"""Clients that pipeline requests for large replies and never read them, against a real server
process: each is disconnected once a write has been blocked for `server.write_timeout`
seconds, and the memory their replies took is given back once they are gone."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import pytest
import trio

from tests.raw_http import (
    STREAM_ERRORS,
    address,
    closed_by_peer,
    open_fds,
    raise_open_files_limit,
    rss_bytes,
)
from tests.server_process import running_roomd

pytestmark = pytest.mark.slow

WRITE_TIMEOUT = 2.0
PIPELINED = 100
ROOMS, MEMBERS = 40, 6
ENV = {
    "ROOMD_SERVER__WRITE_TIMEOUT": str(WRITE_TIMEOUT),
    "ROOMD_SERVER__PERSIST": "false",
    "ROOMD_KINDS__MULTI_ROOM__MAX_ROOMS_PER_CREATOR": "0",
    "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "3600",
}
LIST_BODY = json.dumps({"cnt": 100}).encode()
LIST_REQUEST = (
    b"POST /weapp/multi_room/get_room_list HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(LIST_BODY)}\r\n\r\n".encode()
    + LIST_BODY
)


def big_member(user: str) -> dict[str, str]:
    return {
        "userID": user,
        "userName": user.ljust(256, "n"),
        "userAvatar": "https://a.test/" + "a" * 1000,
        "pushURL": f"rtmp://p/live/0_{user}",
    }


async def fill_big_rooms(http: httpx.AsyncClient) -> int:
    """Rooms whose listing makes a page of 100 about as large as a reply may be; its size."""
    for r in range(ROOMS):
        body = {**big_member(f"r{r}m0"), "roomName": "n" * 1000}
        room = (await http.post("/weapp/multi_room/create_room", json=body)).json()["roomID"]
        for m in range(1, MEMBERS):
            joined = await http.post("/weapp/multi_room/add_pusher", json={"roomID": room, **big_member(f"r{r}m{m}")})
            assert joined.json()["code"] == 0
    return len((await http.post("/weapp/multi_room/get_room_list", json={"cnt": 100})).content)


PER_ADDRESS = 128  # server.max_connections_per_address, the default
# Behind a proxy (the per-address limit off) every connection is held; what they leave is only given
# back at page granularity with glibc's allocator: pymalloc keeps a 1 MiB arena for any object in it.
BEHIND_A_PROXY = {"ROOMD_SERVER__MAX_CONNECTIONS_PER_ADDRESS": "0", "PYTHONMALLOC": "malloc"}


@pytest.mark.parametrize(
    ("connections", "env"),
    [(1000, {}), (1000, BEHIND_A_PROXY)],
    ids=["1000", "1000-no-per-address-limit-malloc"],
)
async def test_never_reading_clients_are_dropped_and_their_memory_comes_back(
    tmp_path: Path, connections: int, env: dict[str, str]
) -> None:
    """200 never-reading connections are each dropped for a blocked write; of 1,000 from one
    address only the first 256 are held at all, the others reset at once; with the per-address
    limit off (and glibc's allocator) all 1,000 are held, dropped, and their memory comes back."""
    per_address = int(env.get("ROOMD_SERVER__MAX_CONNECTIONS_PER_ADDRESS", PER_ADDRESS))
    raise_open_files_limit(connections + 1000)
    async with running_roomd(tmp_path, **ENV, **env) as server:
        pid = server.process.pid
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            assert await fill_big_rooms(http) > 200_000
            for _ in range(5):
                assert (await http.post("/weapp/multi_room/get_room_list", json={"cnt": 100})).status_code == 200
        await trio.sleep(1)
        fds_before, rss_before = open_fds(pid), rss_bytes(pid)

        async def never_read(streams: list[trio.SocketStream], delay: float) -> None:
            await trio.sleep(delay)  # a ramp: a burst would overflow the listen backlog
            try:
                stream = await trio.open_tcp_stream(*address(server.base_url))
            except OSError:  # reset while connecting: over the per-address limit
                refused_at_once.append(1)
                return
            streams.append(stream)
            with contextlib.suppress(*STREAM_ERRORS):
                await stream.send_all(LIST_REQUEST * PIPELINED)

        streams: list[trio.SocketStream] = []
        refused_at_once: list[int] = []
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index in range(connections):
                nursery.start_soon(never_read, streams, index * 0.005)
        opened = trio.current_time() - started
        rss_during = rss_bytes(pid)
        with trio.move_on_after(WRITE_TIMEOUT + 4):
            while not all(closed_by_peer(stream) for stream in streams):  # noqa: ASYNC110 -- closed by the server: no event
                await trio.sleep(0.1)
        all_dropped_after = trio.current_time() - started
        dropped = sum(closed_by_peer(stream) for stream in streams) + len(refused_at_once)
        fds_after = open_fds(pid)
        # given back a second after the last drop, trimmed again 2 and 6 s later and once the dropped
        # connections' timers (read_timeout, 10 s) have run out: 14 s later (memory_return.follow_up_trims)
        with trio.move_on_after(18):
            while rss_bytes(pid) > rss_before * 1.10:  # noqa: ASYNC110 -- another process's memory: no event
                await trio.sleep(0.2)
        rss_after = rss_bytes(pid)
        for stream in streams:
            await trio.aclose_forcefully(stream)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
            assert (await http.post("/weapp/multi_room/get_room_list", json={"cnt": 1})).json()["code"] == 0

    assert dropped == connections, f"{connections - dropped} never-reading connections still open"
    assert fds_after <= fds_before + 1  # + the error log file, opened by the first refusal warning
    assert all_dropped_after < opened + WRITE_TIMEOUT + 3
    mb = 1024 * 1024
    assert rss_during > rss_before + 50 * mb  # the attack did cost memory while it lasted
    assert rss_after <= rss_before * 1.10, f"RSS {rss_before / mb:.1f} MB before, {rss_after / mb:.1f} MB after"
    dropped_by_roomd = sum(int(line.split(" | ")[-1].split()[0]) for line in server.lines_about("replies unsent"))
    # accepted, then dropped for a blocked write; beyond the per-address limit, reset at once
    assert dropped_by_roomd >= (min(connections, per_address) if per_address else connections) * 0.9
    if not per_address:
        assert not refused_at_once
