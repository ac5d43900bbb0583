"""Shared fixtures: an in-process roomd (actor system + ASGI app) and a client for it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from roomd.actors.system import RoomSystem, open_room_system
from roomd.auth.signers import choose_user_signer
from roomd.config import Settings, load_settings
from roomd.web.asgi import create_app
from roomd.web.context import AppContext
from tests.fake_im import FakeIm, start_fake_im
from tests.redis_server import RedisServer, running_redis

FIXED_WALL_CLOCK = 1_750_000_000.0
TEST_ENV = {
    "ROOMD_SERVER__PERSIST": "false",  # tests of persistence turn it on, each with its own data_dir
    "ROOMD_SERVER__DATA_DIR": str(Path(tempfile.gettempdir()) / f"roomd-test-data-{os.getpid()}"),
    "ROOMD_LIVE__BIZID": "8888",
    "ROOMD_LIVE__PUSH_SECRET_KEY": "test-push-key",
    "ROOMD_IM__SECRET_KEY": "test-im-secret",
    "ROOMD_IM__SDK_APP_ID": "0",
    # abuse limits off: tests that are about them turn them on
    "ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS": "0",
    "ROOMD_LIMITS__CREATE_RATE_PER_USER": "0",
    "ROOMD_LIMITS__LOGIN_RATE_PER_ADDRESS": "0",
    **{
        f"ROOMD_KINDS__{kind}__{cap}": "0"
        for kind in ("MULTI_ROOM", "DOUBLE_ROOM")
        for cap in ("MAX_WAITING_ROOMS", "MAX_ROOMS_PER_CREATOR", "MAX_ROOMS_PER_ADDRESS")
    },
}


@dataclass
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> int:
        return int(self.body["code"])


class Api:
    """Calls roomd's whole ASGI app in-process, the way clients call it over the network."""

    def __init__(self, app: Any, ctx: AppContext, http: httpx.AsyncClient, system: RoomSystem) -> None:
        self.app = app
        self.ctx = ctx
        self._system = system
        self.http = http
        self.prefix = ctx.settings.server.route_prefix

    @property
    def system(self) -> RoomSystem:
        return self._system

    async def post(self, endpoint: str, body: Any = None, *, kind: str = "multi_room") -> Reply:
        return await self.raw(
            f"{self.prefix}/{kind}/{endpoint}",
            json.dumps(body if body is not None else {}).encode(),
            "application/json",
        )

    async def raw(self, path: str, data: bytes, content_type: str, method: str = "POST") -> Reply:
        response = await self.http.request(method, path, content=data, headers={"Content-Type": content_type})
        return Reply(response.status_code, response.json())

    async def get(self, path: str) -> Reply:
        response = await self.http.get(path)
        return Reply(response.status_code, response.json())


def make_settings(**env: str) -> Settings:
    return load_settings(environ={**TEST_ENV, **env})


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@asynccontextmanager
async def open_roomd(settings: Settings, *, wall_clock: Callable[[], float] = time.time) -> AsyncIterator[Api]:
    """roomd in-process: its actor tree and its ASGI app, with a client for the app."""
    signer = choose_user_signer(settings.im).signer
    async with (
        httpx.AsyncClient() as http,
        open_room_system(settings, user_signer=signer, wall_clock=wall_clock) as system,
    ):
        ctx = AppContext.build(settings, system.router, signer, http=http, wall_clock=wall_clock)
        app = create_app(ctx)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://roomd.test") as client:
            yield Api(app, ctx, client, system)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with open_roomd(settings, wall_clock=lambda: FIXED_WALL_CLOCK) as roomd:
        yield roomd


IM_SDK_APP_ID = 1400000001
IM_SECRET = "fake-im-secret"


@asynccontextmanager
async def open_im_world(**env: str) -> AsyncIterator[tuple[Api, FakeIm]]:
    """roomd in-process with IM configured to call a fake IM server on loopback."""
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, FakeIm(IM_SDK_APP_ID, "admin", secret_key=IM_SECRET))
        settings = make_settings(
            **{
                "ROOMD_IM__SDK_APP_ID": str(IM_SDK_APP_ID),
                "ROOMD_IM__SECRET_KEY": IM_SECRET,
                "ROOMD_IM__BASE_URL": fake.base_url,
                "ROOMD_IM__TIMEOUT": "1",
                "ROOMD_IM__RETRY_BACKOFF": "0.05",
                **env,
            }
        )
        async with open_roomd(settings) as roomd:
            yield roomd, fake
        nursery.cancel_scope.cancel()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on loopback for the test (cluster mode), stopped after it."""
    with running_redis(tmp_path / "redis") as server:
        yield server


async def eventually(predicate: Callable[[], bool], *, within: float = 20.0) -> None:
    """Wait (in real time: real sockets are involved) until `predicate()` holds."""
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110  # the state is another process's or a socket's: no event to wait on
            await trio.sleep(0.01)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The shared data_dir of in-process servers (its token secret) goes with the run."""
    shutil.rmtree(TEST_ENV["ROOMD_SERVER__DATA_DIR"], ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: starts a real roomd process or takes more than a few seconds; `pytest -m 'not slow'` leaves it out",
    )
