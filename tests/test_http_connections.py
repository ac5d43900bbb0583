"""roomd's HTTP connections in process, over loopback: a closed connection is freed by reference
counting alone, so a burst of reconnects leaves the cycle collector nothing to pause for."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio
from hypercorn.config import Config
from trio.testing import wait_all_tasks_blocked

from bench.echo_app import app
from roomd.http.accept_errors import AcceptErrorLog
from roomd.http.connection import Connection, ConnectionPolicy
from roomd.http.server import serve
from tests.raw_http import exchange


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def live_connections() -> int:
    return sum(isinstance(o, Connection) for o in gc.get_objects())


async def test_a_closed_connection_leaves_no_reference_cycle(no_cycle_collector: None) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: serve(
                app,
                config,
                ConnectionPolicy(write_timeout=5, h2c=False),
                AcceptErrorLog(lambda: None),
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        for _ in range(50):
            reply = await exchange(binds[0], b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert reply.status == 200
        await wait_all_tasks_blocked()
        assert live_connections() == 0
        stop.set()
