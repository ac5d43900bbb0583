"""What persistence costs on the operations it records (joins and leaves; heartbeats are free).

    .venv/bin/python bench/persistence.py [--seconds 5] [--workers 32]

In-process (actor tree + ASGI app, no network): `--workers` concurrent clients
each join and leave one room in a loop for `--seconds`, first with
`server.persist = false`, then with persistence on (SQLite in a temporary
directory, synchronous = FULL: every acknowledged change is on disk), then
persistence on again with the store's queue bound (`MAX_QUEUED` submissions
waiting, beyond which changes are refused before they are applied) lifted,
alternating bounded and unbounded `--rounds` times: what the bound costs.
Prints operations per second and latency p50/p99, and the batches written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import trio
from loguru import logger

from roomd.actors.system import open_room_system
from roomd.auth.signers import choose_user_signer
from roomd.config import load_settings
from roomd.web.asgi import create_app
from roomd.web.context import AppContext


async def run(persist: bool, seconds: float, workers: int, *, bounded: bool = True) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(environ={"ROOMD_SERVER__PERSIST": str(persist).lower(), "ROOMD_SERVER__DATA_DIR": tmp})
        signer = choose_user_signer(settings.im).signer
        async with open_room_system(settings, user_signer=signer) as system:
            app = create_app(AppContext.build(settings, system.router, signer))
            if not bounded:
                system.store.max_queued = sys.maxsize  # type: ignore[attr-defined]  # SqliteStore's

            async def call(endpoint: str, body: dict[str, str]) -> dict[str, object]:
                data = json.dumps(body).encode()
                scope = {
                    "type": "http",
                    "method": "POST",
                    "path": f"/weapp/multi_room/{endpoint}",
                    "query_string": b"",
                    "headers": [(b"content-type", b"application/json")],
                    "client": ("127.0.0.1", 1),
                }
                sent: list[dict[str, object]] = []

                async def receive() -> dict[str, object]:
                    return {"type": "http.request", "body": data, "more_body": False}

                async def send(message: dict[str, object]) -> None:
                    sent.append(message)

                await app(scope, receive, send)
                return json.loads(sent[-1]["body"])  # type: ignore[arg-type]

            latencies: list[float] = []
            deadline = trio.current_time() + seconds

            async def worker(n: int) -> None:
                me = {"userID": f"w{n}", "userName": "w", "userAvatar": "", "pushURL": "rtmp://p/live/s"}
                room = (await call("create_room", {**me, "roomName": "r"}))["roomID"]
                guest = {**me, "userID": f"g{n}", "roomID": room}
                while trio.current_time() < deadline:
                    for endpoint, body in (
                        ("add_pusher", guest),
                        ("delete_pusher", {"roomID": room, "userID": f"g{n}"}),
                    ):
                        started = time.perf_counter()
                        assert (await call(endpoint, body))["code"] == 0  # type: ignore[arg-type]
                        latencies.append(time.perf_counter() - started)

            async with trio.open_nursery() as nursery:
                for n in range(workers):
                    nursery.start_soon(worker, n)
            batches = getattr(system.store, "batches", 0)
    ordered = sorted(latencies)
    return {
        "ops": len(ordered) / seconds,
        "p50": statistics.median(ordered) * 1000,
        "p99": ordered[int(0.99 * len(ordered))] * 1000,
        "per_batch": len(ordered) / batches if batches else 0.0,
    }


async def main(seconds: float, workers: int, rounds: int) -> None:
    logger.remove()
    off = await run(False, seconds, workers)
    on = await run(True, seconds, workers)
    bounded: list[float] = []
    unbounded: list[float] = []
    for _ in range(rounds):
        bounded.append((await run(True, seconds, workers))["ops"])
        unbounded.append((await run(True, seconds, workers, bounded=False))["ops"])
    print(f"joins and leaves, {workers} concurrent clients, {seconds:g} s each, in-process")
    print(f"  persist off: {off['ops']:7.0f} ops/s   p50 {off['p50']:6.2f} ms   p99 {off['p99']:6.2f} ms")
    print(
        f"  persist on : {on['ops']:7.0f} ops/s   p50 {on['p50']:6.2f} ms   p99 {on['p99']:6.2f} ms"
        f"   ({on['per_batch']:.1f} changes per committed batch)"
    )
    print(f"  ratio on/off: {on['ops'] / off['ops']:.2f}")
    ratios = [b / u for b, u in zip(bounded, unbounded, strict=True)]
    print(
        f"  queue bound: {statistics.median(bounded):7.0f} ops/s bounded vs {statistics.median(unbounded):7.0f}"
        f" unbounded (medians of {rounds}); ratio median {statistics.median(ratios):.3f},"
        f" pairs {' '.join(f'{r:.3f}' for r in ratios)}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="bounded/unbounded pairs")
    args = parser.parse_args()
    trio.run(main, args.seconds, args.workers, args.rounds)
