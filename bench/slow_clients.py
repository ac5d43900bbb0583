"""Heartbeat latency of a well-behaved client, idle and while many clients trickle request bodies.

    .venv/bin/python bench/slow_clients.py [--tricklers 1000] [--seconds 15] [--read-timeout 2]

Starts roomd (read_timeout 2 s), creates one room, and has one client
heartbeat on a keep-alive connection as fast as it can, with 20 ms pauses:
for `--seconds` idle, then for `--seconds` while N other connections each
send a pusher_heartbeat head with `Content-Length: 100` and then its body a
byte a second, reconnecting whenever roomd cuts them off. Prints the
heartbeat latency p50/p99/max idle and under attack, how many bodies were
cut off, with what status, and how long after their head each one was.
"""

from __future__ import annotations

import argparse
import resource
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roomd_process import free_port, start_roomd

HEAD = (
    b"POST /weapp/multi_room/add_pusher HTTP/1.1\r\n"
    b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
)
STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def trickle_once(port: int) -> tuple[float, int]:
    """One trickled body: seconds from its head until roomd cut it off, and the status it sent (0: none)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(HEAD)
        started = trio.current_time()
        reply = b""
        async with trio.open_nursery() as nursery:

            async def feed() -> None:
                try:
                    while True:
                        await stream.send_all(b" ")
                        await trio.sleep(1)
                except STREAM_ERRORS:
                    pass

            nursery.start_soon(feed)
            try:
                while chunk := await stream.receive_some(65536):
                    reply += chunk
            except STREAM_ERRORS:
                pass
            nursery.cancel_scope.cancel()
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0
    return trio.current_time() - started, status


async def run(port: int, tricklers: int, seconds: float) -> None:
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        member = {
            "userID": "alice",
            "userName": "a",
            "userAvatar": "",
            "pushURL": "rtmp://p/live/0_alice",
            "roomName": "r",
        }
        room = (await http.post("/weapp/multi_room/create_room", json=member)).json()["roomID"]
        latencies: dict[str, list[float]] = {"idle": [], "attack": []}
        phase = "idle"
        not_ok = 0
        cut_offs: list[tuple[float, int]] = []

        async def heartbeats() -> None:
            nonlocal not_ok
            while True:
                started = trio.current_time()
                reply = await http.post("/weapp/multi_room/pusher_heartbeat", json={"roomID": room, "userID": "alice"})
                latencies[phase].append(trio.current_time() - started)
                not_ok += reply.json()["code"] != 0
                await trio.sleep(0.02)

        async def trickler(delay: float) -> None:
            await trio.sleep(delay)
            while True:
                cut_offs.append(await trickle_once(port))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(heartbeats)
            await trio.sleep(seconds)
            for index in range(tricklers):
                nursery.start_soon(trickler, index * 0.002)
            await trio.sleep(tricklers * 0.002 + 1)
            phase = "attack"
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()

    for name, samples in latencies.items():
        print(
            f"  heartbeat {name:6}  n={len(samples):5}  p50 {statistics.median(samples) * 1000:6.1f} ms   "
            f"p99 {percentile(samples, 0.99) * 1000:6.1f} ms   max {max(samples) * 1000:6.1f} ms"
        )
    print(f"  heartbeats answered with a code other than 0: {not_ok}")
    statuses = sorted({status for _, status in cut_offs})
    times = [s for s, _ in cut_offs]
    print(
        f"  bodies cut off: {len(cut_offs)}, statuses {statuses} (0 = reset before the reply was read); "
        f"after p50 {statistics.median(times):.2f} s, max {max(times):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tricklers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of heartbeats idle, then under attack")
    parser.add_argument("--read-timeout", type=float, default=2.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, args.tricklers * 2 + 1000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))  # roomd inherits it
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        settings = {
            "ROOMD_SERVER__PERSIST": "false",
            "ROOMD_SERVER__READ_TIMEOUT": str(args.read_timeout),
            "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "4",
            "ROOMD_SERVER__MAX_CONNECTIONS_PER_ADDRESS": "0",  # the tricklers all come from loopback
        }
        roomd = start_roomd(port, Path(tmp), settings)
        try:
            print(
                f"{args.tricklers} connections trickling bodies a byte a second, read_timeout {args.read_timeout:g} s:"
            )
            trio.run(run, port, args.tricklers, args.seconds)
        finally:
            roomd.send_signal(signal.SIGTERM)
            roomd.wait(timeout=60)


if __name__ == "__main__":
    main()
