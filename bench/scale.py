"""Resident memory at 10,000 rooms x 6 members, and get_room_list latency at that size.

    .venv/bin/python bench/scale.py [--rooms 10000] [--members 6] [--full-fields [--escaped-text]]

With --full-fields every field is at its maximum, as a hostile client would
send them (a 256-character userName, a 1,024-character userAvatar, a
2,048-character pushURL, a 1,024-byte roomName, and 16 custom fields of
1 KiB with 64-byte names per room): the figures for sizing the caps against
an attacker rather than a typical client. With --escaped-text as well, that
text is made of a control character (U+0001), which JSON can only write as
`\u0001`: six bytes per character in every reply and cached listing entry.

Starts one `roomd serve` process (embedded defaults, timers long enough to
outlast the run), fills it over HTTP with 32 concurrent clients, then reads
its resident memory (VmRSS) and times 500 get_room_list calls (pages of 20 at
random offsets) from one client. Rooms are filled in two phases (every room
with its creator, then the other members), so memory is split into what a
room costs (with its first member) and what each further member costs: the
figures for sizing `kinds.*.max_waiting_rooms` and the per-client caps.
Prints RSS before and after, the latency p50/p99/max (client-side, so an
upper bound), and RSS once every room has been listed (get_room_list keeps
each room's encoded entry while the room is unchanged).
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roomd_process import free_port, rss_bytes, start_roomd

CONCURRENCY = 32
LIST_CALLS = 500
CUSTOM_FIELDS = 16
# idle connections expire before roomd's keep_alive_timeout (5 s): none is reused as roomd closes it
LIMITS = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=2.0)


FILL = {"letters": "", "escaped": "\x01"}  # a character of text: as given (letters), or one JSON escapes


def member_fields(user: str, *, full: bool, fill: str = "") -> dict[str, str]:
    if not full:
        return {"userID": user, "userName": user, "userAvatar": "", "pushURL": f"rtmp://p/live/0_{user}"}
    push = f"rtmp://p/live/0_{user}?"
    return {
        "userID": user,
        "userName": (user + (fill or "n") * 256)[:256],
        "userAvatar": ("https://a/" + user + "/" + (fill or "a") * 1024)[:1024],
        "pushURL": (push + "q" * 2048)[:2048],
    }


def room_name(r: int, *, full: bool, fill: str = "") -> str:
    return (f"room {r} " + (fill or "i") * 1024)[:1024] if full else f"room {r}"


async def create_rooms(base: str, rooms: int, full: bool, fill: str) -> list[str]:
    """Every room with its creator as first member (and, full, its custom fields); their roomIDs."""
    next_room = iter(range(rooms))
    made: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=LIMITS) as http:

        async def worker() -> None:
            for r in next_room:
                body = {
                    **member_fields(f"r{r}m0", full=full, fill=fill),
                    "roomName": room_name(r, full=full, fill=fill),
                }
                room = (await http.post("/weapp/multi_room/create_room", json=body)).json()["roomID"]
                made.append(room)
                for f in range(CUSTOM_FIELDS if full else 0):
                    name = (f"f{f}_" + "k" * 64)[:64]
                    field = {"roomID": room, "fieldName": name, "operation": "set", "value": (fill or "v") * 1024}
                    reply = (await http.post("/weapp/multi_room/set_custom_field", json=field)).json()
                    assert reply["code"] == 0, reply

        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENCY):
                nursery.start_soon(worker)
    return made


async def add_members(base: str, room_ids: list[str], members: int, full: bool, fill: str) -> None:
    next_room = iter(enumerate(room_ids))
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=LIMITS) as http:

        async def worker() -> None:
            for r, room in next_room:
                for m in range(1, members):
                    body = {"roomID": room, **member_fields(f"r{r}m{m}", full=full, fill=fill)}
                    assert (await http.post("/weapp/multi_room/add_pusher", json=body)).json()["code"] == 0

        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENCY):
                nursery.start_soon(worker)


def time_listing(base: str, rooms: int) -> list[float]:
    samples = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(LIST_CALLS):
            body = {"index": random.randrange(max(rooms - 20, 1)), "cnt": 20}
            started = time.perf_counter()
            reply = http.post("/weapp/multi_room/get_room_list", json=body).json()
            samples.append(time.perf_counter() - started)
            assert reply["code"] == 0 and (len(reply["rooms"]) == 20 or reply.get("truncated")), reply.keys()
    return samples


def list_every_room(base: str) -> int:
    """Page through get_room_list to the end; the largest reply's size in bytes."""
    largest, index = 0, 0
    with httpx.Client(base_url=base, timeout=30) as http:
        while True:
            reply = http.post("/weapp/multi_room/get_room_list", json={"index": index, "cnt": 100})
            rooms = reply.json()["rooms"]
            if not rooms:
                return largest
            largest = max(largest, len(reply.content))
            index += len(rooms)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=6)
    parser.add_argument("--full-fields", action="store_true", help="every field at its maximum")
    parser.add_argument("--escaped-text", action="store_true", help="with --full-fields: text JSON must escape")
    args = parser.parse_args()
    fill = FILL["escaped" if args.escaped_text else "letters"]
    settings = {
        "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "86400",
        "ROOMD_KINDS__MULTI_ROOM__MAX_IDLE_DURATION": "86400",
    }
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_roomd(port, Path(tmp), settings, console=Path(tempfile.gettempdir()) / "roomd-scale-console.log")
        try:
            before = rss_bytes(server.pid)
            started = time.perf_counter()
            room_ids = trio.run(create_rooms, base, args.rooms, args.full_fields, fill)
            with_rooms = rss_bytes(server.pid)
            trio.run(add_members, base, room_ids, args.members, args.full_fields, fill)
            filled_in = time.perf_counter() - started
            after = rss_bytes(server.pid)
            samples = sorted(time_listing(base, args.rooms))
            largest_page = list_every_room(base)
            listed = rss_bytes(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    members = args.rooms * args.members
    fields = "every field at its maximum" if args.full_fields else "short fields"
    fields += ", text JSON escapes" if args.full_fields and args.escaped_text else ""
    print(f"{args.rooms} rooms x {args.members} members = {members} members ({fields}), filled in {filled_in:.0f} s")
    further = args.rooms * (args.members - 1)
    per_member = (after - with_rooms) / further if further else 0.0
    per_room = (with_rooms - before) / args.rooms - per_member
    print(
        f"resident memory: {before / 2**20:.1f} MB empty, {with_rooms / 2**20:.1f} MB with every room's creator, "
        f"{after / 2**20:.1f} MB full"
    )
    print(
        f"per room (without members) {per_room:.0f} bytes, per member {per_member:.0f} bytes, "
        f"overall {(after - before) / members:.0f} bytes per member"
    )
    print(
        f"once every room was listed: {listed / 2**20:.1f} MB, {(listed - after) / args.rooms:.0f} bytes per room "
        f"more (the largest page {largest_page} bytes)"
    )
    p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    print(
        f"get_room_list (20 rooms per page, random offset), {LIST_CALLS} calls: "
        f"p50 {statistics.median(samples) * 1000:.1f} ms  p99 {p99 * 1000:.1f} ms  max {samples[-1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
