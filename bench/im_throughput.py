"""IM actor throughput against the fake IM server on loopback.

Phase 1 creates N groups through the actor, 50 at a time, the way 50 busy
clients would (create_room waits for create_group). Phase 2 queues one
notification and one destroy_group for every group at once. For each phase
it prints calls per second and queued-to-delivered latency (p50/p99) from
the actor's own statistics; medians over runs. The fake runs in the same
process, so the figures are a floor. From the repository root:

    .venv/bin/python bench/im_throughput.py [--groups 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import trio
from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roomd.actors.im import ImActor
from roomd.config import load_settings
from roomd.qcloud.usersig import HmacUserSigner
from tests.fake_im import FakeIm, start_fake_im

SDK_APP_ID = 1400000009
SECRET = "bench-secret"
CREATORS = 50


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(actor: ImActor, started: float) -> tuple[float, float, float]:
    elapsed = trio.current_time() - started
    calls = sum(n for (_, outcome), n in actor.stats.outcomes.items() if outcome == "ok")
    latencies = actor.stats.latencies
    result = (calls / elapsed, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000)
    actor.stats.outcomes.clear()
    actor.stats.latencies.clear()
    return result


async def one_run(groups: int) -> dict[str, tuple[float, float, float]]:
    results = {}
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, FakeIm(SDK_APP_ID, "admin", secret_key=SECRET))
        settings = load_settings(
            environ={
                "ROOMD_IM__SDK_APP_ID": str(SDK_APP_ID),
                "ROOMD_IM__SECRET_KEY": SECRET,
                "ROOMD_IM__BASE_URL": fake.base_url,
            }
        )
        signer = HmacUserSigner(SDK_APP_ID, SECRET)
        actor: ImActor = await nursery.start(ImActor(settings.im, signer, path="bench/im", wall_clock=time.time).run)
        names = [f"g{i}" for i in range(groups)]
        refused = 0

        async def creator(mine: list[str]) -> None:
            nonlocal refused
            for group in mine:
                refused += await actor.create_group(group, group) is not None

        started = trio.current_time()
        async with trio.open_nursery() as creators:
            for c in range(CREATORS):
                creators.start_soon(creator, names[c::CREATORS])
        results["create_group, 50 at a time"] = summary(actor, started)
        assert refused == 0, f"{refused} create_group calls failed"

        started = trio.current_time()
        for group in names:
            actor.notify_pusher_change(group)
            actor.destroy_group(group)
        while actor.queue_depth:  # noqa: ASYNC110 -- the IM actor has no event for an empty queue; a bench may poll
            await trio.sleep(0.005)
        results["notify + destroy, all queued at once"] = summary(actor, started)
        assert fake.rejected_auth == 0 and not fake.groups
        actor.stop()
        nursery.cancel_scope.cancel()
    return results


async def main(groups: int, runs: int) -> None:
    logger.remove()
    runs_results = [await one_run(groups) for _ in range(runs)]
    print(f"IM actor vs fake IM on loopback, {groups} groups, median of {runs} runs")
    for phase in runs_results[0]:
        rate, p50, p99 = (statistics.median(r[phase][i] for r in runs_results) for i in range(3))
        print(f"  {phase:<38} {rate:>7,.0f} calls/s   queued->delivered p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.groups, args.runs)
