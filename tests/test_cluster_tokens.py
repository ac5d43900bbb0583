"""Login tokens in a cluster at their edges: a logout Redis did not take, and secrets in Redis that
are not secrets a node made."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import coredis
import pytest
import trio

from roomd.cluster.link import LinkServer
from roomd.cluster.redis_rooms import RedisUnavailable, RoomsInRedis
from roomd.cluster.shared_tokens import RETRY_INTERVAL, SharedRevocations, SharedSecretCorrupt
from tests.cluster_helpers import NodeApi, open_node, open_nodes
from tests.conftest import eventually
from tests.redis_server import RedisServer
from tests.server_process import failing_roomd
from tests.token_calls import call_as, logged_in

TOKEN_MODE = {"ROOMD_AUTH__MODE": "token"}
NOW = 1_750_000_000


def refuses(node: NodeApi, who: dict[str, str]) -> bool:
    return node.ctx.tokens.check(who["userID"], who["token"], now=int(time.time())) is not None


async def test_a_logout_redis_did_not_take_reaches_every_node_once_redis_is_back(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 2, **TOKEN_MODE) as (a, b):
        (alice,) = await logged_in(a, 1, kind="multi_room")
        redis.stop()
        try:
            logout = await call_as(a, alice, "multi_room", "logout", {})
            assert logout.status == 503 and logout.code == 12, logout.body
            assert "could not be saved in Redis" in logout.body["detail"]
            assert refuses(a, alice) and not refuses(b, alice)
            assert a.node.revocations.pending == 1
            # refused where it logged out, so its client cannot log out again: the node has to keep at it
            assert (await call_as(a, alice, "multi_room", "logout", {})).code == 7
        finally:
            redis.start()  # same port, same data
        await eventually(lambda: refuses(b, alice), within=5)
        assert a.node.revocations.pending == 0
    async with open_nodes(redis.url, 1, **TOKEN_MODE) as (late,):  # and a node started after it
        refused = await call_as(late, alice, "multi_room", "get_room_list", {})
        assert refused.code == 7 and "revoked" in refused.body["detail"], refused.body


class FlakyRedis:
    """What SharedRevocations asks of RoomsInRedis to add a logout, up while `up`."""

    def __init__(self) -> None:
        self.up = False
        self.tries: list[float] = []
        self.revoked: list[str] = []

    async def revoke(self, token_id: str, expires: int, *, keep_after_ms: int) -> None:
        self.tries.append(trio.current_time())
        if not self.up:
            raise RedisUnavailable("ConnectionError: connection refused")
        self.revoked.append(token_id)


def _revocations(redis: FlakyRedis) -> SharedRevocations:
    return SharedRevocations(cast(RoomsInRedis, redis), token_ttl=7200)


async def test_pending_logouts_are_tried_every_second_until_redis_takes_them_and_expired_ones_are_dropped(
    autojump_clock: trio.abc.Clock,
) -> None:
    redis = FlakyRedis()
    revocations = _revocations(redis)
    wall = [float(NOW)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(revocations.keep_written, lambda: wall[0])
        start = trio.current_time()
        for token_id, expires in (("a" * 64, NOW + 7200), ("b" * 64, NOW + 3)):
            with pytest.raises(Exception, match="could not be saved in Redis"):
                await revocations.add(token_id, expires, now=NOW)
            assert token_id in revocations
        await trio.sleep(2.5)
        assert revocations.pending == 2 and redis.revoked == []
        assert [t - start for t in redis.tries] == pytest.approx([0, 0, 1, 2])  # a failed try waits for the next
        wall[0] = NOW + 4  # the second token has expired: its logout is not needed any more
        redis.up = True
        await trio.sleep(RETRY_INTERVAL)
        assert redis.revoked == ["a" * 64] and revocations.pending == 0
        await trio.sleep(60)
        assert len(redis.tries) == 5  # nothing pending: no more tries
        nursery.cancel_scope.cancel()


async def test_a_logout_still_pending_when_the_node_stops_gets_one_more_try_then(
    autojump_clock: trio.abc.Clock,
) -> None:
    redis = FlakyRedis()
    revocations = _revocations(redis)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(revocations.keep_written, lambda: NOW)
        with pytest.raises(Exception, match="could not be saved in Redis"):
            await revocations.add("a" * 64, NOW + 60, now=NOW)
        redis.up = True  # back, but the next try is not due before the stop
        await trio.sleep(RETRY_INTERVAL / 2)
        nursery.cancel_scope.cancel()
    assert redis.revoked == ["a" * 64] and revocations.pending == 0


async def _set(redis: RedisServer, key: str, value: str) -> None:
    async with coredis.Redis.from_url(redis.url, verify_version=False) as client:
        await client.set(key, value)


@pytest.mark.parametrize(("key", "value"), [("token_secret", ""), ("token_secret", "short"), ("link_secret", "")])
async def test_a_node_does_not_start_on_a_corrupt_secret_in_redis(redis: RedisServer, key: str, value: str) -> None:
    await _set(redis, f"roomd:{key}", value)
    with pytest.raises(SharedSecretCorrupt) as refused:
        async with open_node(redis.url, name="n0", **TOKEN_MODE):
            pass
    assert str(refused.value) == (
        f"the cluster's {key} in Redis key roomd:{key} is corrupt ({len(value)} bytes); "
        "delete the key and start the nodes again: the first to start makes a new one"
    )
    async with coredis.Redis.from_url(redis.url, verify_version=False) as client:
        assert await client.get(f"roomd:{key}") == value.encode()  # left for the operator to look at
        assert await client.keys("roomd:node:*") == set()  # nothing of the node started: no lease taken
        await client.delete([f"roomd:{key}"])
    async with open_node(redis.url, name="n0", **TOKEN_MODE) as node:  # as the message says
        (alice,) = await logged_in(node, 1, kind="multi_room")
        assert (await call_as(node, alice, "multi_room", "get_room_list", {})).code == 0


@pytest.mark.slow
async def test_roomd_serve_on_a_corrupt_secret_in_redis_stops_with_one_line_and_status_2(
    redis: RedisServer, tmp_path: Path
) -> None:
    await _set(redis, "roomd:token_secret", "short")
    env: dict[str, Any] = {"ROOMD_CLUSTER__REDIS_URL": redis.url, **TOKEN_MODE}
    failed = await failing_roomd(tmp_path, **env)
    assert failed.returncode == 2, failed.output
    assert failed.output[-1] == (
        "roomd: the cluster's token_secret in Redis key roomd:token_secret is corrupt (5 bytes); "
        "delete the key and start the nodes again: the first to start makes a new one"
    ), failed.output
    assert not any("Traceback" in line for line in failed.output), failed.output


def test_a_link_server_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="empty"):
        LinkServer(secret="")
