"""What durable logouts cost a well-behaved client: heartbeat latency while 10,000 logouts run.

    .venv/bin/python bench/logout.py [--logouts 10000] [--connections 16] [--idle 5] [--runs 3]

Per run: starts roomd (`roomd serve`, auth.mode = token, a fresh data_dir),
gets --logouts tokens from get_im_login_info, and has a separate process
heartbeat one room every 10 ms, timing each reply: first for --idle seconds
with nothing else going on, then while the logouts run over --connections
kept-alive connections (each logout answers once its revocation is fsync'd
to data/revoked_tokens), then while as many get_push_url requests (token
checked, nothing written) run over the same connections: on a machine whose
cores the load generator shares, any load slows heartbeats, so the cost of
durable logouts is the difference between those two phases. Prints
heartbeat p50/p99 idle, during the logouts and during the get_push_url
requests, and both request rates, for each run and as medians over the runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roomd_process import free_port, start_roomd

from roomd.loadtest.http import HttpPool

HEARTBEAT_INTERVAL = 0.01
WARM_UP = 1.0  # seconds of heartbeats left out of the idle figures
TIMEOUT = 30.0
PREFIX = "/weapp/multi_room"


@dataclass(frozen=True)
class Identity:
    user_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"userID": self.user_id, "token": self.token}


@dataclass(frozen=True)
class RunResult:
    idle_p50: float
    idle_p99: float
    busy_p50: float
    busy_p99: float
    logouts_per_second: float
    other_p50: float
    other_p99: float
    others_per_second: float


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def fresh_identities(base: str, count: int, connections: int) -> list[Identity]:
    pool = HttpPool(base, size=connections, timeout=TIMEOUT)
    identities: list[Identity] = []

    async def worker(share: int) -> None:
        for _ in range(share):
            _, reply, _ = await pool.post_json(f"{PREFIX}/get_im_login_info", {"userIDPrefix": "bench"})
            assert reply["code"] == 0, reply
            identities.append(Identity(reply["userID"], reply["token"]))

    async with trio.open_nursery() as nursery:
        for i in range(connections):
            nursery.start_soon(worker, count // connections + (i < count % connections))
    await pool.aclose()
    return identities


async def create_room(base: str, creator: Identity) -> str:
    pool = HttpPool(base, size=1, timeout=TIMEOUT)
    body = {
        "userID": creator.user_id,
        "roomName": "bench",
        "userName": creator.user_id,
        "userAvatar": "",
        "pushURL": f"rtmp://p.test/live/0_{creator.user_id}",
    }
    _, reply, _ = await pool.post_json(f"{PREFIX}/create_room", body, creator.auth)
    await pool.aclose()
    assert reply["code"] == 0, reply
    return str(reply["roomID"])


async def logouts(base: str, identities: list[Identity], connections: int) -> None:
    await each_once(base, identities, connections, "logout")


async def push_urls(base: str, identities: list[Identity], connections: int) -> None:
    await each_once(base, identities, connections, "get_push_url")


async def each_once(base: str, identities: list[Identity], connections: int, endpoint: str) -> None:
    pool = HttpPool(base, size=connections, timeout=TIMEOUT)
    queue = iter(identities)

    async def worker() -> None:
        for identity in queue:
            body = {"userID": identity.user_id} if endpoint == "get_push_url" else {}
            _, reply, _ = await pool.post_json(f"{PREFIX}/{endpoint}", body, identity.auth)
            assert reply["code"] == 0, reply

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(worker)
    await pool.aclose()


def heartbeat_process(base: str, room_id: str, member: Identity, stop: Event, results: Connection) -> None:
    """In its own process, so its timings are not the load generator's scheduling delays."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def beat() -> list[tuple[float, float]]:
        pool = HttpPool(base, size=1, timeout=TIMEOUT)
        samples: list[tuple[float, float]] = []
        body = {"roomID": room_id, "userID": member.user_id}
        while not stop.is_set():
            started = time.monotonic()
            _, reply, elapsed = await pool.post_json(f"{PREFIX}/pusher_heartbeat", body, member.auth)
            assert reply["code"] == 0, reply
            samples.append((started, elapsed))
            await trio.sleep(max(0.0, HEARTBEAT_INTERVAL - (time.monotonic() - started)))
        await pool.aclose()
        return samples

    results.send(trio.run(beat))


def one_run(count: int, connections: int, idle: float) -> RunResult:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        settings = {"ROOMD_AUTH__MODE": "token", "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "3600"}
        server = start_roomd(port, Path(tmp), settings)
        try:
            identities = trio.run(fresh_identities, base, 2 * count + 1, connections)
            member, identities, others = identities[0], identities[1 : count + 1], identities[count + 1 :]
            room_id = trio.run(create_room, base, member)
            context = multiprocessing.get_context("spawn")
            stop = context.Event()
            receiver, sender = context.Pipe(duplex=False)
            beater = context.Process(target=heartbeat_process, args=(base, room_id, member, stop, sender))
            beater.start()
            time.sleep(WARM_UP + idle)
            busy_from = time.monotonic()
            trio.run(logouts, base, identities, connections)
            busy_until = time.monotonic()
            time.sleep(1.0)
            other_from = time.monotonic()
            trio.run(push_urls, base, others, connections)
            other_until = time.monotonic()
            stop.set()
            samples: list[tuple[float, float]] = receiver.recv()
            beater.join()
            revoked = (Path(tmp) / "data" / "revoked_tokens").read_text().count("\n")
            assert revoked == count, f"{revoked} revocations on disk, {count} expected"
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    first = samples[0][0]
    idle_ms = [e * 1000 for t, e in samples if first + WARM_UP <= t < busy_from]
    busy_ms = [e * 1000 for t, e in samples if busy_from <= t < busy_until]
    other_ms = [e * 1000 for t, e in samples if other_from <= t < other_until]
    return RunResult(
        idle_p50=percentile(idle_ms, 0.5),
        idle_p99=percentile(idle_ms, 0.99),
        busy_p50=percentile(busy_ms, 0.5),
        busy_p99=percentile(busy_ms, 0.99),
        logouts_per_second=count / (busy_until - busy_from),
        other_p50=percentile(other_ms, 0.5),
        other_p99=percentile(other_ms, 0.99),
        others_per_second=count / (other_until - other_from),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logouts", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of heartbeats before the logouts")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for run in range(1, args.runs + 1):
        result = one_run(args.logouts, args.connections, args.idle)
        results.append(result)
        print(f"run {run}: {summary(args.logouts, [result])}", flush=True)
    print(f"median of {len(results)}: {summary(args.logouts, results)}")


def summary(count: int, results: list[RunResult]) -> str:
    def median(field: str) -> float:
        return statistics.median(getattr(r, field) for r in results)

    return (
        f"heartbeat idle p50 {median('idle_p50'):.2f} ms p99 {median('idle_p99'):.2f} ms | "
        f"during {count} logouts p50 {median('busy_p50'):.2f} ms p99 {median('busy_p99'):.2f} ms "
        f"({median('logouts_per_second'):.0f}/s) | during {count} get_push_url p50 {median('other_p50'):.2f} ms "
        f"p99 {median('other_p99'):.2f} ms ({median('others_per_second'):.0f}/s) | "
        f"p50 ratio logouts/get_push_url {statistics.median(r.busy_p50 / r.other_p50 for r in results):.2f}"
    )


if __name__ == "__main__":
    main()
