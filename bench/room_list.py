"""How much a get_room_list page costs with 5 rooms and with 5,000 (and 50,000).

Runs roomd in-process (actor tree + ASGI app) on the embedded defaults,
fills each kind with rooms of two members, then times get_room_list over
the app for the first page and for a page deep in the list. Prints medians
in microseconds and the ratio of the large directory to the small one.

    .venv/bin/python bench/room_list.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx
import trio
from loguru import logger

from roomd.actors.messages import CreateRoom, Join, MemberInfo
from roomd.actors.system import open_room_system
from roomd.auth.signers import choose_user_signer
from roomd.config import load_settings
from roomd.web.asgi import create_app
from roomd.web.context import AppContext

SIZES = (5, 5_000, 50_000)
WARMUP = 50
PAGE = 5  # the smallest directory holds exactly one page, so every size renders the same work


def _member(user_id: str) -> MemberInfo:
    return MemberInfo(user_id, user_id, "", f"rtmp://p.test/live/0_{user_id}")


async def _time_pages(rooms: int, rounds: int) -> dict[str, float]:
    settings = load_settings(environ={"ROOMD_SERVER__MAILBOX_SIZE": "8"})
    async with open_room_system(settings) as system:
        directory = system.directories["multi_room"]
        for i in range(rooms):
            reply = await directory.create_room(
                CreateRoom(creator=f"c{i}", room_info=f"room {i}", first_member=_member(f"c{i}"))
            )
            await directory.call_room(reply.value, Join(_member(f"g{i}")))  # type: ignore[union-attr]
        ctx = AppContext.build(settings, system.router, choose_user_signer(settings.im).signer)
        transport = httpx.ASGITransport(app=create_app(ctx))
        client = httpx.AsyncClient(transport=transport, base_url="http://roomd.bench")
        results: dict[str, float] = {}
        for label, index in (("first page", 0), ("deep page", max(rooms - PAGE, 0))):
            body = json.dumps({"index": index, "cnt": PAGE})
            samples = []
            for round_ in range(rounds + WARMUP):
                started = time.perf_counter()
                response = await client.post(
                    "/weapp/multi_room/get_room_list", content=body, headers={"Content-Type": "application/json"}
                )
                assert response.json()["code"] == 0
                if round_ >= WARMUP:
                    samples.append(time.perf_counter() - started)
            results[label] = statistics.median(samples) * 1e6
        direct = []
        for _ in range(rounds):
            started = time.perf_counter()
            directory.page(max(rooms - PAGE, 0), PAGE)
            direct.append(time.perf_counter() - started)
        results["index only, deep page"] = statistics.median(direct) * 1e6
        return results


async def main(rounds: int) -> None:
    logger.remove()
    table = {size: await _time_pages(size, rounds) for size in SIZES}
    print(f"get_room_list, page of {PAGE} rooms x 2 members, median of {rounds} (microseconds)")
    labels = list(table[SIZES[0]])
    print(f"{'rooms':>8} " + " ".join(f"{label:>22}" for label in labels))
    for size, row in table.items():
        print(f"{size:>8} " + " ".join(f"{row[label]:>22.1f}" for label in labels))
    for size in SIZES[1:]:
        ratios = ", ".join(f"{label} {table[size][label] / table[SIZES[0]][label]:.2f}x" for label in labels)
        print(f"ratio {size} / {SIZES[0]} rooms: {ratios}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    trio.run(main, parser.parse_args().rounds)
