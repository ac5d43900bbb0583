"""What clients that never read their replies cost roomd's memory, and whether it comes back.

    .venv/bin/python bench/never_reading.py [--connections 500] [--requests 300] [--rounds 2]
        [--max-connections-per-address 0] [--pythonmalloc malloc]

Starts roomd (write_timeout 2 s), fills 40 rooms x 6 members with the largest
fields the API allows, so that a get_room_list page of 100 is a reply of
about max_reply_bytes (256 KiB). Then, each round, opens N connections (2 ms
apart) that each pipeline `--requests` get_room_list requests and never call
recv, waits until the server has closed them all (at most `--hold` seconds),
closes whatever is left, and reads the server's RSS each second for
`--settle` seconds. Prints RSS before, the peak during and after each round, how many
attack connections the server closed (or refused: TCP state, as the client
never reads) and when the last one went, how long a new client's GET /healthz
took meanwhile, and roomd's own lines about giving memory back.

`--max-connections-per-address 0` holds every connection, as behind a proxy
(by default roomd resets those over 128 from one address at once);
`--pythonmalloc malloc` runs roomd on glibc's allocator instead of Python's
small-object one, whose 1 MiB arenas a few surviving objects keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roomd_process import free_port, rss_bytes, start_roomd

ROOMS, MEMBERS = 40, 6
WRITE_TIMEOUT = 2.0
TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8  # tcpi_state, linux/tcp_states.h
LIMITS_OFF = {
    "ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS": "0",
    "ROOMD_LIMITS__CREATE_RATE_PER_USER": "0",
    "ROOMD_KINDS__MULTI_ROOM__MAX_ROOMS_PER_ADDRESS": "0",
    "ROOMD_KINDS__MULTI_ROOM__MAX_ROOMS_PER_CREATOR": "0",
}


def big_member(user: str) -> dict[str, str]:
    return {
        "userID": user,
        "userName": user + "n" * (256 - len(user)),
        "userAvatar": "https://a.test/" + "a" * 1000,
        "pushURL": f"rtmp://p/live/0_{user}",
    }


def fill(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        for r in range(ROOMS):
            body = {**big_member(f"r{r}m0"), "roomName": "room" + "n" * 1000}
            room = http.post("/weapp/multi_room/create_room", json=body).json()["roomID"]
            for m in range(1, MEMBERS):
                reply = http.post("/weapp/multi_room/add_pusher", json={"roomID": room, **big_member(f"r{r}m{m}")})
                assert reply.json()["code"] == 0, reply.text
        page = http.post("/weapp/multi_room/get_room_list", json={"cnt": 100})
        print(f"a page of 100 rooms is {len(page.content) / 1024:.0f} KiB")


def closed_by_server(stream: trio.SocketStream) -> bool:
    """roomd closed or reset this connection (we never read, so we look at the TCP state)."""
    return stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] in (TCP_CLOSE, TCP_CLOSE_WAIT)


async def attack(port: int, pid: int, connections: int, requests: int, hold: float) -> dict[str, float]:
    body = json.dumps({"cnt": 100}).encode()
    one = (
        b"POST /weapp/multi_room/get_room_list HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    peak = rss_bytes(pid)
    streams: list[trio.SocketStream] = []

    async def never_read(delay: float) -> None:
        await trio.sleep(delay)  # a ramp: a burst would overflow the listen backlog (100)
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:  # reset at once: over server.max_connections_per_address
            return
        streams.append(stream)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(one * requests)

    fresh: list[float] = []
    refused_fresh: list[int] = []

    async def fresh_client() -> None:  # a well-behaved client connecting meanwhile, twice a second
        while True:
            began = trio.current_time()
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                    assert (await http.get("/healthz")).status_code == 200
                fresh.append(trio.current_time() - began)
            except httpx.TransportError:  # it shares the attackers' address, and so their limit
                refused_fresh.append(1)
            await trio.sleep(0.5)

    started = trio.current_time()
    all_closed_after = float("nan")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fresh_client)
        for index in range(connections):
            nursery.start_soon(never_read, index * 0.002)
        while trio.current_time() - started < hold:
            peak = max(peak, rss_bytes(pid))
            if (
                len(streams)
                and all(closed_by_server(stream) for stream in streams)
                and trio.current_time() - started > connections * 0.002
            ):
                all_closed_after = trio.current_time() - started
                break
            await trio.sleep(0.1)
        closed = sum(closed_by_server(stream) for stream in streams)
        nursery.cancel_scope.cancel()
    for stream in streams:
        await trio.aclose_forcefully(stream)
    return {
        "peak": peak,
        "closed_by_server": closed,
        "all_closed_after": all_closed_after,
        "fresh_max": max(fresh, default=float("nan")),
        "fresh_count": len(fresh),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300, help="pipelined get_room_list requests per connection")
    parser.add_argument("--hold", type=float, default=8.0, help="seconds the attack connections are kept open at most")
    parser.add_argument("--settle", type=int, default=5, help="seconds to wait after an attack before reading RSS")
    parser.add_argument("--rounds", type=int, default=2, help="attacks one after the other (a leak would grow)")
    parser.add_argument(
        "--max-connections-per-address",
        type=int,
        default=None,
        help="server.max_connections_per_address for roomd (0: no limit, as behind a proxy); default: roomd's",
    )
    parser.add_argument(
        "--pythonmalloc",
        default=None,
        help="PYTHONMALLOC for the roomd process (malloc: glibc's allocator instead of pymalloc); default: unset",
    )
    args = parser.parse_args()
    port = free_port()
    mb = 1024 * 1024
    print(
        f"{args.connections} never-reading connections x {args.requests} pipelined get_room_list "
        f"(write_timeout {WRITE_TIMEOUT:g} s), {args.rounds} rounds"
        + (
            ""
            if args.max_connections_per_address is None
            else f", max_connections_per_address {args.max_connections_per_address}"
        )
        + ":"
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = {
            **LIMITS_OFF,
            "ROOMD_SERVER__PERSIST": "false",
            "ROOMD_SERVER__WRITE_TIMEOUT": str(WRITE_TIMEOUT),
            "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "3600",
        }
        if args.pythonmalloc is not None:
            settings["PYTHONMALLOC"] = args.pythonmalloc
        if args.max_connections_per_address is not None:
            settings["ROOMD_SERVER__MAX_CONNECTIONS_PER_ADDRESS"] = str(args.max_connections_per_address)
        roomd = start_roomd(port, Path(tmp), settings, console=Path(tmp) / "console.log")
        print(f"roomd pid {roomd.pid}", flush=True)
        try:
            fill(f"http://127.0.0.1:{port}")
            time.sleep(1)
            before = rss_bytes(roomd.pid)
            for round_ in range(1, args.rounds + 1):
                result = trio.run(attack, port, roomd.pid, args.connections, args.requests, args.hold)
                settling = []
                for _ in range(args.settle):
                    time.sleep(1)
                    settling.append(rss_bytes(roomd.pid))
                after = settling[-1]
                print(
                    f"  round {round_}: RSS before {before / mb:.1f} MB   peak {result['peak'] / mb:.1f} MB   "
                    f"after {after / mb:.1f} MB ({(after - before) / before * 100:+.1f} %)"
                )
                print("    RSS each second after the attack: " + " ".join(f"{r / mb:.0f}" for r in settling))
                print(
                    f"    closed or refused by the server: {result['closed_by_server']:.0f} of {args.connections}; "
                    f"all gone "
                    f"{result['all_closed_after']:.1f} s after the attack began (nan: not within --hold)"
                )
                print(
                    f"    meanwhile a new client's GET /healthz (new connection each): "
                    f"{result['fresh_count']:.0f} done, "
                    f"slowest {result['fresh_max'] * 1000:.0f} ms"
                )
        finally:
            roomd.send_signal(signal.SIGTERM)
            roomd.wait(timeout=60)
            for line in (Path(tmp) / "console.log").read_text().splitlines():
                if "replies unsent" in line:
                    print("  roomd:", line.split(" | ")[-1])


if __name__ == "__main__":
    main()
