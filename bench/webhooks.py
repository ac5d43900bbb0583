"""Webhook delivery, measured: events/s to a local receiver and the delay from an event to its delivery.

    .venv/bin/python bench/webhooks.py [--rooms 1000] [--runs 3]

Starts a receiver on loopback (a threaded HTTP server that answers 204 at once
and notes when each event arrives) and `roomd serve` (SQLite persistence,
webhooks to the receiver, 8 lanes), then makes --rooms rooms with two members
each through 32 concurrent clients: 3 events a room (room_created and two
member_joined). Prints, per run, events delivered per second (first to last
arrival) and the p50/p99/max of arrival time minus the event's `time`, then
the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roomd_process import free_port, start_roomd

arrivals: list[tuple[float, float]] = []  # (arrived, event time)
lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        arrived = time.time()
        with lock:
            arrivals.append((arrived, json.loads(body)["time"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def member(user: str) -> dict[str, str]:
    return {"userID": user, "userName": user, "userAvatar": "", "pushURL": f"rtmp://p/live/0_{user}"}


async def make_rooms(base: str, rooms: int) -> None:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        numbers = iter(range(rooms))

        async def worker() -> None:
            for n in numbers:
                room = (
                    await http.post("/weapp/multi_room/create_room", json={**member(f"a{n}"), "roomName": "w"})
                ).json()
                joined = await http.post(
                    "/weapp/multi_room/add_pusher", json={"roomID": room["roomID"], **member(f"b{n}")}
                )
                assert joined.json()["code"] == 0

        async with trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(worker)


def run_once(rooms: int) -> dict[str, float]:
    arrivals.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        roomd = start_roomd(
            port,
            Path(tmp),
            {
                "ROOMD_WEBHOOKS__URLS": url,
                "ROOMD_WEBHOOKS__SECRET": "bench-secret",
                "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "3600",
            },
        )
        try:
            trio.run(make_rooms, f"http://127.0.0.1:{port}", rooms)
            expected = rooms * 3
            deadline = time.monotonic() + 120
            while len(arrivals) < expected and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            roomd.terminate()
            roomd.wait(timeout=60)
            server.shutdown()
    with lock:
        got = list(arrivals)
    delays = sorted(arrived - made for arrived, made in got)
    span = max(a for a, _ in got) - min(a for a, _ in got)
    return {
        "events": len(got),
        "per_second": len(got) / span if span else 0.0,
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": delays[int(0.99 * (len(delays) - 1))] * 1000,
        "max_ms": delays[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    print(f"{'events':>7} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for _ in range(args.runs):
        result = run_once(args.rooms)
        results.append(result)
        print(
            f"{result['events']:7.0f} {result['per_second']:9.0f} {result['p50_ms']:7.1f}"
            f" {result['p99_ms']:7.1f} {result['max_ms']:7.1f}"
        )
    print(
        f"medians: {statistics.median(r['per_second'] for r in results):.0f} events/s, "
        f"p99 {statistics.median(r['p99_ms'] for r in results):.1f} ms"
    )


if __name__ == "__main__":
    main()
