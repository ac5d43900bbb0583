"""Cluster mode at its edges: lost Redis replies, failed loads, rooms closing while made again,
leases lost mid-write, slow writes behind forwarded calls, and what reaches the link port."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import trio

from roomd.cluster.link import MAX_FRAME, LinkServer
from roomd.cluster.redis_rooms import RedisUnavailable, RoomsInRedis
from tests.bodies import joining, member_fields
from tests.cluster_helpers import node_in_scope, open_nodes
from tests.conftest import IM_SDK_APP_ID, IM_SECRET, eventually
from tests.fake_im import FakeIm, start_fake_im
from tests.redis_server import RedisServer
from tests.test_cluster_link import LOOPBACK, echo, serving


@contextmanager
def reply_lost(rooms: RoomsInRedis, method: str) -> Iterator[None]:
    """For the block, Redis runs `method`'s script but its reply never comes back."""
    real = getattr(rooms, method)

    async def run_then_lose_the_reply(*args: Any) -> Any:
        await real(*args)
        raise RedisUnavailable("no answer within 0.5 s")

    setattr(rooms, method, run_then_lose_the_reply)
    try:
        yield
    finally:
        setattr(rooms, method, real)


async def test_a_dead_nodes_pending_claim_is_removed_by_the_takeover(redis: RedisServer) -> None:
    """A node that died between claiming a roomID and saving the room leaves it pending in Redis; the
    takeover removes it, so the roomID can be made again."""
    async with RoomsInRedis.connect(redis.url, call_timeout=1) as rooms:
        assert await rooms.register("ghost", "127.0.0.1:1", 300)
        assert (await rooms.claim("ghost", "multi_room", "room_p"))[0] == 1
        async with open_nodes(redis.url, 1) as (node,):
            await eventually(lambda: node.node.router.takeovers == 1, within=5)
            await trio.sleep(0.5)
            created = await node.post("create_room", {"userID": "alice", "roomInfo": "x", "roomID": "room_p"})
            assert created.code == 0, (created.body, await rooms.load("multi_room", "room_p"))


async def test_a_claim_whose_reply_was_lost_does_not_burn_the_room_id(redis: RedisServer) -> None:
    """A claim that Redis made but whose reply was lost (the client heard 12) is removed by the
    reconciler, so a retry of the same roomID succeeds."""
    async with open_nodes(redis.url, 1) as (node,):
        with reply_lost(node.node.router._rooms, "claim"):
            first = await node.post("add_pusher", joining("alice", "room_lost"), kind="live_room")
        assert first.code == 12
        await trio.sleep(1.0)  # a reap or two
        again = await node.post("add_pusher", joining("alice", "room_lost"), kind="live_room")
        assert again.code == 0, again.body


async def test_a_room_taken_over_whose_load_failed_is_run_after_all(redis: RedisServer) -> None:
    """A room taken over whose load failed once still runs on its new owner: the reconciler finds
    rooms Redis says a node holds that run nowhere."""
    async with open_nodes(redis.url, 1) as (survivor,), node_in_scope(redis.url, name="doomed") as (doomed, scope):
        room_id = (await doomed.post("create_room", member_fields("alice", roomName="r"))).body["roomID"]
        rooms = survivor.node.router._rooms
        real_load = rooms.load
        failed: list[str] = []

        async def load_failing_once(kind: str, room: str) -> Any:
            if not failed:
                failed.append(room)
                raise RedisUnavailable("no answer within 0.5 s")
            return await real_load(kind, room)

        rooms.load = load_failing_once  # type: ignore[method-assign]
        scope.cancel()
        await eventually(lambda: bool(failed), within=5)
        await trio.sleep(2.0)  # lease + reaps
        pushers = await survivor.post("get_pushers", {"roomID": room_id})
        assert pushers.code == 0, pushers.body


@asynccontextmanager
async def fake_im_env() -> AsyncIterator[tuple[FakeIm, dict[str, str]]]:
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, FakeIm(IM_SDK_APP_ID, "admin", secret_key=IM_SECRET))
        env = {
            "ROOMD_IM__SDK_APP_ID": str(IM_SDK_APP_ID),
            "ROOMD_IM__SECRET_KEY": IM_SECRET,
            "ROOMD_IM__BASE_URL": fake.base_url,
            "ROOMD_IM__TIMEOUT": "1",
            "ROOMD_IM__RETRY_BACKOFF": "0.05",
        }
        yield fake, env
        nursery.cancel_scope.cancel()


async def test_a_room_closed_on_one_node_and_made_again_on_another_keeps_its_im_group(redis: RedisServer) -> None:
    """A roomID whose room is closing on another live node (its IM group being destroyed there) is
    answered 12 until that is done; the room made afterwards keeps its own IM group."""
    async with fake_im_env() as (fake, env), open_nodes(redis.url, 2, **env) as (a, b):
        created = await a.post("create_room", member_fields("alice", roomName="g", roomID="room_g"))
        assert created.code == 0, created.body
        fake.behave(only_api="destroy_group", delay=0.5)  # IM a little slow to destroy
        assert (await a.post("destroy_room", {"roomID": "room_g", "userID": "alice"})).code == 0
        again = await b.post("create_room", member_fields("bob", roomName="g2", roomID="room_g"))
        assert again.code == 12 and "closing" in again.body["detail"]  # A is still destroying its group
        for _ in range(40):
            again = await b.post("create_room", member_fields("bob", roomName="g2", roomID="room_g"))
            if again.code != 12:
                break
            await trio.sleep(0.1)
        assert again.code == 0, again.body
        await trio.sleep(1.5)
        assert (await b.post("get_pushers", {"roomID": "room_g"})).code == 0  # the room lives on B
        assert "room_g" in fake.groups, [(c.api, c.answered, round(c.at, 3)) for c in fake.calls]


async def test_a_room_made_again_on_the_same_node_survives_the_old_rooms_group_destroyed(redis: RedisServer) -> None:
    """A room destroyed and made again under the same roomID on the same node runs on, whatever
    the earlier room writes once IM has destroyed its group."""
    async with fake_im_env() as (fake, env), open_nodes(redis.url, 1, **env) as (node,):
        assert (await node.post("create_room", member_fields("alice", roomName="s", roomID="room_s"))).code == 0
        fake.behave(only_api="destroy_group", delay=0.3)
        assert (await node.post("destroy_room", {"roomID": "room_s", "userID": "alice"})).code == 0
        again = await node.post("create_room", member_fields("alice", roomName="s2", roomID="room_s"))
        assert again.code == 0, again.body
        joined = await node.post("add_pusher", joining("bob", "room_s"))
        assert joined.code == 0, joined.body
        pushers = await node.post("get_pushers", {"roomID": "room_s"})
        assert [p["userID"] for p in pushers.body["pushers"]] == ["alice", "bob"], pushers.body


async def test_a_link_client_without_the_secret_cannot_make_the_server_buffer_a_megabyte() -> None:
    """Before it has greeted, a link may send no more than a greeting's worth of bytes."""
    async with serving(echo, secret="cluster-secret") as served:
        stream = await trio.open_tcp_stream(LOOPBACK, served.port)
        async with stream:
            await stream.send_all(struct.pack(">I", MAX_FRAME) + b"x" * 60_000)
            with trio.move_on_after(2):
                assert await stream.receive_some() == b""  # closed: no greeting is that long
                return
            raise AssertionError("the unauthenticated link is still open, buffering a 1 MiB frame")


async def test_a_link_client_that_never_greets_is_closed() -> None:
    """A connection to the link port that never greets is closed after a few seconds."""
    async with serving(echo, secret="cluster-secret") as served:
        stream = await trio.open_tcp_stream(LOOPBACK, served.port)
        async with stream:
            with trio.move_on_after(8):
                assert await stream.receive_some() == b""
                return
            raise AssertionError(f"still open after 8 s; links held: {len(served.server.links)}")


async def test_a_room_handed_back_and_taken_again_by_the_same_node_loses_no_acknowledged_join(
    redis: RedisServer,
) -> None:
    """Joins in flight when the lease is lost are answered 0 only if they are in the room that the
    node (under its next lease) runs again."""
    async with open_nodes(redis.url, 1) as (node,):
        room_id = (await node.post("create_room", member_fields("alice", roomName="h"))).body["roomID"]
        rooms = node.node.router._rooms
        real_write = rooms.write
        slow = True

        async def slow_write(*args: Any) -> Any:
            if slow:
                await trio.sleep(0.8)  # Redis a little slow to fsync
            return await real_write(*args)

        rooms.write = slow_write  # type: ignore[method-assign]
        codes: dict[str, int] = {}

        async def join(user_id: str) -> None:
            codes[user_id] = (await node.post("add_pusher", joining(user_id, room_id))).code

        async with trio.open_nursery() as nursery:
            for user_id in ("bob", "carol", "dave"):
                nursery.start_soon(join, user_id)
            await trio.sleep(0.1)
            await rooms.resign(node.node.router.lease.owner)  # the lease is gone (expired, say)
        slow = False
        await trio.sleep(1.0)
        pushers = await node.post("get_pushers", {"roomID": room_id})
        acknowledged = {user_id for user_id, code in codes.items() if code == 0}
        assert set(codes.values()) <= {0, 12}, codes
        assert pushers.code == 0, pushers.body  # the room runs again, taken back under a new lease
        assert acknowledged <= {p["userID"] for p in pushers.body["pushers"]}, (codes, pushers.body)


async def test_a_forwarded_change_answered_busy_was_not_applied(redis: RedisServer) -> None:
    """A forwarded change whose write ends after the caller's deadline is answered with its outcome,
    as in one process: never 12 for a change that was made."""
    env = {"ROOMD_IM__TIMEOUT": "0.5", "ROOMD_SERVER__CALL_TIMEOUT": "1.2"}
    async with open_nodes(redis.url, 2, **env) as (owner, other):
        room_id = (await owner.post("create_room", member_fields("alice", roomName="c"))).body["roomID"]
        rooms = owner.node.router._rooms
        real_write = rooms.write

        async def slow_write(*args: Any) -> Any:
            await trio.sleep(1.5)  # Redis slow to fsync: the write ends after the caller's deadline
            return await real_write(*args)

        rooms.write = slow_write  # type: ignore[method-assign]
        field = {"roomID": room_id, "userID": "alice", "fieldName": "likes", "operation": "inc"}
        reply = await other.post("set_custom_field", field)
        rooms.write = real_write  # type: ignore[method-assign]
        await trio.sleep(0.5)
        custom = (await owner.post("get_custom_info", {"roomID": room_id})).body["custom"]
        assert reply.code == 0 or custom == "{}", (reply.body, custom)


async def test_links_to_a_nodes_old_leases_are_closed(redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The link to a node under a lease it lost is closed: a node whose lease flaps does not pile up links."""
    servers: list[LinkServer] = []

    class RecordedLinkServer(LinkServer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            servers.append(self)

    monkeypatch.setattr("roomd.cluster.node.LinkServer", RecordedLinkServer)
    async with open_nodes(redis.url, 2) as (a, b):
        for i in range(4):
            room_id = (await b.post("create_room", member_fields(f"u{i}", roomName="l"))).body["roomID"]
            assert (await a.post("get_pushers", {"roomID": room_id})).code == 0  # forwarded: a link a -> b
            old = b.node.router.lease.owner
            await b.node.router._rooms.resign(old)  # b's lease is lost (a Redis hiccup, a pause)
            await eventually(lambda old=old: b.node.router.lease.owner not in ("", old), within=5)
            await eventually(lambda old=old: old not in a.node.router.peers._links, within=5)
        await trio.sleep(0.5)
        assert len(servers[1].links) <= 1, f"{len(servers[1].links)} links from a to b are open"


async def test_a_destroyed_room_is_gone_on_every_node_while_im_destroys_its_group(redis: RedisServer) -> None:
    """A destroyed room answers 3 on every node at once, even while IM has not yet confirmed that
    its group is gone."""
    async with fake_im_env() as (fake, env), open_nodes(redis.url, 2, **env) as (a, b):
        room_id = (await a.post("create_room", member_fields("alice", roomName="d"))).body["roomID"]
        assert (await b.post("add_pusher", joining("bob", room_id))).code == 0
        fake.behave(only_api="destroy_group", mode="hang")  # IM does not confirm for now
        assert (await a.post("destroy_room", {"roomID": room_id, "userID": "alice"})).code == 0
        assert (await a.post("pusher_heartbeat", {"roomID": room_id, "userID": "bob"})).code == 3
        beat = await b.post("pusher_heartbeat", {"roomID": room_id, "userID": "bob"})
        fake.behave()
        assert beat.code == 3, beat.body


async def test_a_creation_whose_write_reply_was_lost_leaves_no_ghost_in_the_listing(redis: RedisServer) -> None:
    """A creation whose save reply from Redis was lost (the client heard 12) leaves no room listed
    that runs nowhere: it is closed, or it runs."""
    async with open_nodes(redis.url, 2) as (a, b):
        with reply_lost(a.node.router._rooms, "write"):
            created = await a.post("create_room", member_fields("alice", roomName="ghost", roomID="room_ghost"))
        assert created.code == 12
        await trio.sleep(1.0)
        listing = await b.post("get_room_list", {})
        pushers = await b.post("get_pushers", {"roomID": "room_ghost"})
        assert [r["roomID"] for r in listing.body["rooms"]] == [] or pushers.code == 0, (listing.body, pushers.body)
