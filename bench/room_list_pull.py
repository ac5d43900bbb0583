"""Greedy listing: 8 connections pulling maximum get_room_list pages vs one client's heartbeats.

    .venv/bin/python bench/room_list_pull.py [--pullers 8] [--seconds 6] [--runs 3]

Starts one `roomd serve` process and fills it with 100 rooms of 6 members
whose every field is as long as the protocol allows (roomInfo 1024 bytes,
names 256 and avatars 1024 characters), so a page of 100 rooms would be
about 1 MB of JSON without `server.max_reply_bytes`. Then, per run, one
client heartbeats for `--seconds` alone and `--seconds` while `--pullers`
keep-alive connections request `cnt=100` pages back to back. Prints the
heartbeat p50/p99 idle and under the pull, their ratio, the page size and
how many pages were served; the figure of merit is the median ratio of p50s.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roomd_process import free_port, start_roomd

ROOMS, MEMBERS = 100, 6
PREFIX = "/weapp/multi_room"


def big_member(user_id: str) -> dict[str, str]:
    return {
        "userID": user_id,
        "userName": ("n" + user_id) * (256 // (len(user_id) + 1)),
        "userAvatar": "https://a.test/" + "x" * 1000,
        "pushURL": f"rtmp://p/live/0_{user_id}",
    }


async def fill(base: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        first = None
        for r in range(ROOMS):
            creator = big_member(f"r{r}m0")
            reply = await http.post(f"{PREFIX}/create_room", json={**creator, "roomName": "i" * 1024})
            room = reply.json()["roomID"]
            first = first or room
            for m in range(1, MEMBERS):
                joined = await http.post(f"{PREFIX}/add_pusher", json={**big_member(f"r{r}m{m}"), "roomID": room})
                assert joined.json()["code"] == 0
        assert first is not None
        return first, "r0m0"


async def heartbeats(http: httpx.AsyncClient, room: str, user: str, seconds: float) -> list[float]:
    samples = []
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        started = time.perf_counter()
        reply = await http.post(f"{PREFIX}/pusher_heartbeat", json={"roomID": room, "userID": user})
        samples.append(time.perf_counter() - started)
        assert reply.json()["code"] == 0
        await trio.sleep(0.01)
    return samples


async def one_run(base: str, room: str, user: str, pullers: int, seconds: float) -> dict[str, float]:
    pulled = [0]
    page_bytes = [0]
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        idle = await heartbeats(http, room, user, seconds)

        async def pull() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=30) as greedy:
                while True:
                    reply = await greedy.post(f"{PREFIX}/get_room_list", json={"index": 0, "cnt": 100})
                    page_bytes[0] = len(reply.content)
                    pulled[0] += 1

        async with trio.open_nursery() as nursery:
            for _ in range(pullers):
                nursery.start_soon(pull)
            await trio.sleep(0.5)
            busy = await heartbeats(http, room, user, seconds)
            nursery.cancel_scope.cancel()

    def p99(samples: list[float]) -> float:
        return sorted(samples)[int(0.99 * (len(samples) - 1))]

    return {
        "idle_p50": statistics.median(idle) * 1000,
        "idle_p99": p99(idle) * 1000,
        "busy_p50": statistics.median(busy) * 1000,
        "busy_p99": p99(busy) * 1000,
        "pages_per_s": pulled[0] / (seconds + 0.5),
        "page_bytes": page_bytes[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pullers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-reply-bytes", default="262144")
    args = parser.parse_args()
    settings = {
        "ROOMD_SERVER__PERSIST": "false",
        "ROOMD_SERVER__MAX_REPLY_BYTES": args.max_reply_bytes,
        "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "86400",
    }
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_roomd(port, Path(tmp), settings)
        try:
            room, user = trio.run(fill, base)
            results = [trio.run(one_run, base, room, user, args.pullers, args.seconds) for _ in range(args.runs)]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    for i, r in enumerate(results, 1):
        print(
            f"run {i}: heartbeat p50 {r['idle_p50']:.2f} ms idle -> "
            f"{r['busy_p50']:.2f} ms under {args.pullers} pullers "
            f"(x{r['busy_p50'] / r['idle_p50']:.1f}); p99 {r['idle_p99']:.2f} -> {r['busy_p99']:.2f} ms; "
            f"{r['pages_per_s']:.0f} pages/s of {r['page_bytes']} bytes"
        )
    ratios = [r["busy_p50"] / r["idle_p50"] for r in results]
    print(f"median p50 ratio under the pull: x{statistics.median(ratios):.1f} (target <= x10)")


if __name__ == "__main__":
    main()
