"""Three nodes on one real Redis answer like one server, whichever node each request reaches."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import trio

from roomd.cluster.redis_rooms import RoomsInRedis
from tests.bodies import joining, member_fields
from tests.cluster_helpers import NodeApi, node_in_scope, open_node, open_nodes
from tests.conftest import eventually
from tests.redis_server import RedisServer, running_sentinel
from tests.token_calls import call_as, logged_in


async def test_a_room_life_spread_over_three_nodes_answers_as_one_server(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 3) as (a, b, c):
        created = await a.post("create_room", {**member_fields("alice"), "roomName": "talk"})
        assert created.code == 0, created.body
        room_id = created.body["roomID"]
        assert (await b.post("add_pusher", joining("bob", room_id))).code == 0
        assert (await c.post("add_pusher", joining("carol", room_id))).code == 0
        for node in (a, b, c):
            pushers = await node.post("get_pushers", {"roomID": room_id})
            assert pushers.code == 0
            assert [p["userID"] for p in pushers.body["pushers"]] == ["alice", "bob", "carol"]
            assert pushers.body["roomCreator"] == "alice"
            assert pushers.body["roomName"] == "talk"
            assert (await node.post("pusher_heartbeat", {"roomID": room_id, "userID": "bob"})).code == 0
            listing = await node.post("get_room_list", {"index": 0, "cnt": 10})
            assert [r["roomID"] for r in listing.body["rooms"]] == [room_id]
            assert listing.body["rooms"][0]["memberCount"] == 3
        assert (await c.post("pusher_heartbeat", {"roomID": room_id, "userID": "nobody"})).code == 5
        assert (await b.post("delete_pusher", {"roomID": room_id, "userID": "carol"})).code == 0
        assert (await a.post("delete_pusher", {"roomID": room_id, "userID": "carol"})).code == 5
        assert (await c.post("destroy_room", {"roomID": room_id, "userID": "bob"})).code == 3
        assert (await c.post("destroy_room", {"roomID": room_id, "userID": "alice"})).code == 0
        for node in (a, b, c):
            assert (await node.post("get_pushers", {"roomID": room_id})).code == 3
            assert (await node.post("get_room_list", {})).body["rooms"] == []


async def test_later_clients_create_on_join_and_use_audiences_and_custom_fields_across_nodes(
    redis: RedisServer,
) -> None:
    async with open_nodes(redis.url, 3) as (a, b, c):
        joined = await b.post("add_pusher", joining("anchor", "room_later"), kind="live_room")
        assert joined.code == 0, joined.body
        assert (await c.post("add_pusher", joining("guest", "room_later"), kind="live_room")).code == 0
        audience = {"roomID": "room_later", "userID": "viewer", "userInfo": '{"userName":"v"}'}
        assert (await a.post("add_audience", audience, kind="live_room")).code == 0
        field = {"roomID": "room_later", "userID": "anchor", "fieldName": "likes", "operation": "inc"}
        assert (await c.post("set_custom_field", field, kind="live_room")).code == 0
        for node in (a, b, c):
            pushers = await node.post("get_pushers", {"roomID": "room_later"}, kind="live_room")
            assert [p["userID"] for p in pushers.body["pushers"]] == ["anchor", "guest"]
            assert json.loads(pushers.body["custom"]) == {"likes": 1}
            audiences = await node.post("get_audiences", {"roomID": "room_later"}, kind="live_room")
            assert [x["userID"] for x in audiences.body["audiences"]] == ["viewer"]


async def test_fifty_joins_of_one_room_over_three_nodes_admit_exactly_six(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 3) as nodes:
        created = await nodes[0].post("create_room", {"userID": "host", "roomInfo": "full"})
        room_id = created.body["roomID"]
        codes: list[int] = []

        async def join(i: int) -> None:
            codes.append((await nodes[i % 3].post("add_pusher", joining(f"user{i}", room_id))).code)

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(join, i)
        assert sorted(codes) == [0] * 6 + [5001] * 44
        for node in nodes:
            pushers = await node.post("get_pushers", {"roomID": room_id})
            assert len(pushers.body["pushers"]) == 6


async def test_one_room_id_created_on_three_nodes_at_once_is_made_once(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 3) as nodes:
        codes: list[int] = []

        async def create(i: int) -> None:
            body = {"userID": f"creator{i}", "roomInfo": "same", "roomID": "room_same"}
            codes.append((await nodes[i].post("create_room", body)).code)

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(create, i)
        assert sorted(codes) == [0, 11, 11]


async def test_every_node_lists_the_same_rooms_in_global_creation_order(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 3) as nodes:
        made = []
        for i, node in zip(range(12), itertools.cycle(nodes), strict=False):
            created = await node.post("create_room", member_fields(f"u{i}", roomName=f"r{i}"))
            assert created.code == 0, created.body
            made.append(created.body["roomID"])
        for node in nodes:
            pages = []
            for index in range(0, 12, 5):
                listing = await node.post("get_room_list", {"index": index, "cnt": 5})
                pages.extend(r["roomID"] for r in listing.body["rooms"])
            assert pages == made


async def test_heartbeats_on_a_node_that_does_not_own_the_room_keep_the_member(redis: RedisServer) -> None:
    env = {"ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "2"}  # views trusted for 0.5 s
    async with open_nodes(redis.url, 2, **env) as (owner, other):
        room_id = (await owner.post("create_room", member_fields("alice", roomName="hb"))).body["roomID"]
        assert (await owner.post("add_pusher", joining("bob", room_id))).code == 0
        for _ in range(20):  # 4 s in all, well past the timeout
            assert (await other.post("pusher_heartbeat", {"roomID": room_id, "userID": "bob"})).code == 0
            assert (await owner.post("pusher_heartbeat", {"roomID": room_id, "userID": "alice"})).code == 0
            await trio.sleep(0.2)
        assert other.node.router.relay.relayed >= 6  # answered there, not forwarded
        pushers = await other.post("get_pushers", {"roomID": room_id})
        assert [p["userID"] for p in pushers.body["pushers"]] == ["alice", "bob"]
        async with trio.open_nursery() as nursery:  # alice stays; bob stops heartbeating

            async def alice_heartbeats() -> None:
                while True:
                    await owner.post("pusher_heartbeat", {"roomID": room_id, "userID": "alice"})
                    await trio.sleep(0.3)

            nursery.start_soon(alice_heartbeats)
            await eventually(lambda: _gone_from(owner, room_id, "bob"), within=5)
            # the relaying node hears of the eviction: bob's next heartbeat there is refused
            await eventually(lambda: other.node.router.relay.knows("multi_room", room_id, "bob") is None, within=3)
            assert (await other.post("pusher_heartbeat", {"roomID": room_id, "userID": "bob"})).code == 5
            nursery.cancel_scope.cancel()


def _gone_from(node: object, room_id: str, user_id: str) -> bool:
    from tests.cluster_helpers import NodeApi

    assert isinstance(node, NodeApi)
    directory = node.node.system.directory("multi_room")
    assert directory is not None
    snapshot = directory.snapshot_of(room_id)
    return snapshot is not None and user_id not in {m.user_id for m in snapshot.members}


async def test_a_vanished_nodes_rooms_are_taken_over_with_their_members(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 1) as (survivor,), node_in_scope(redis.url, name="doomed") as (doomed, scope):
        rooms = []
        for i in range(5):
            created = await doomed.post("create_room", member_fields(f"u{i}", roomName=f"r{i}"))
            rooms.append(created.body["roomID"])
            assert (await doomed.post("add_pusher", joining(f"v{i}", rooms[-1]))).code == 0
        assert (await survivor.post("get_pushers", {"roomID": rooms[0]})).code == 0  # forwarded
        started = trio.current_time()
        scope.cancel()  # gone without giving its lease up
        await eventually(lambda: survivor.node.router.takeovers == 5, within=5)
        assert trio.current_time() - started < 1.0 + 1.0  # lease + 1 s
        for i, room_id in enumerate(rooms):
            pushers = await survivor.post("get_pushers", {"roomID": room_id})
            assert [p["userID"] for p in pushers.body["pushers"]] == [f"u{i}", f"v{i}"]
            assert (await survivor.post("pusher_heartbeat", {"roomID": room_id, "userID": f"v{i}"})).code == 0


async def test_a_write_under_an_old_epoch_changes_nothing(redis: RedisServer) -> None:
    async with RoomsInRedis.connect(redis.url, call_timeout=1) as rooms:
        assert await rooms.register("old", "127.0.0.1:1", 60_000)
        status, epoch = await rooms.claim("old", "multi_room", "room_f")
        assert status == 1
        await rooms.resign("old")
        assert await rooms.register("new", "127.0.0.1:2", 60_000)
        assert await rooms.take_over("old", "new", 10) == [("multi_room", "room_f", int(epoch) + 1)]
        assert await rooms.register("old", "127.0.0.1:1", 60_000)  # the old owner, alive again
        ops = [["room", 1, "mallory", "stale"]]
        assert await rooms.write("old", [("multi_room/room_f", int(epoch), ops)]) == [0]
        stored = await rooms.load("multi_room", "room_f")
        assert stored is not None and stored.owner == "new" and stored.creator == ""


async def test_a_token_from_one_node_works_on_every_node_and_a_logout_ends_it_everywhere(redis: RedisServer) -> None:
    token_mode = {"ROOMD_AUTH__MODE": "token"}
    async with open_nodes(redis.url, 2, **token_mode) as (a, b):
        (alice,) = await logged_in(a, 1, kind="multi_room")
        created = await call_as(b, alice, "multi_room", "create_room", {"userID": alice["userID"], "roomInfo": "t"})
        assert created.code == 0, created.body
        assert (await call_as(b, alice, "multi_room", "logout", {})).code == 0
        await eventually(lambda: alice_refused(a, alice), within=2)
        async with open_nodes(redis.url, 1, **token_mode) as (late,):  # a node started after the logout
            refused = await call_as(late, alice, "multi_room", "get_pushers", {"roomID": created.body["roomID"]})
            assert refused.code == 7


def alice_refused(node: NodeApi, who: dict[str, str]) -> bool:
    return node.ctx.tokens.check(who["userID"], who["token"], now=int(time.time())) is not None


async def test_a_node_finds_its_redis_through_sentinel(redis: RedisServer, tmp_path: Path) -> None:
    with running_sentinel(tmp_path / "sentinel", redis) as port:
        async with (
            open_node(f"redis+sentinel://127.0.0.1:{port}/mymaster/0", name="via-sentinel") as watched,
            open_node(redis.url, name="direct") as direct,
        ):
            created = await watched.post("create_room", member_fields("alice", roomName="s"))
            assert created.code == 0, created.body
            listing = await direct.post("get_room_list", {})
            assert [r["roomID"] for r in listing.body["rooms"]] == [created.body["roomID"]]
            assert (await direct.post("add_pusher", joining("bob", created.body["roomID"]))).code == 0


async def test_operators_see_the_node_its_peers_its_rooms_and_the_cluster_counters(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 2) as (owner, other):
        room_id = (await owner.post("create_room", member_fields("alice", roomName="ops"))).body["roomID"]
        for _ in range(3):  # the first is forwarded, the next ones relayed
            assert (await other.post("pusher_heartbeat", {"roomID": room_id, "userID": "alice"})).code == 0
        assert (await other.get("/readyz")).status == 200
        metrics = (await other.http.get("/metrics")).text
        for line in (
            "roomd_cluster_forwarded_total 1.0",  # the first heartbeat (the watch that follows is not a request)
            "roomd_cluster_relayed_heartbeats_total 2.0",
            "roomd_cluster_peers 1.0",
            "roomd_cluster_redis_up 1.0",
            "roomd_cluster_rooms_owned 0.0",
        ):
            assert line in metrics.splitlines(), line
        tree = (await owner.get("/debug/actors")).body["tree"]
        node = next(child for child in tree["children"] if child["kind"] == "cluster node")
        assert node["owner"] == owner.node.router.lease.owner and node["owner"].startswith("n0-")
        assert node["owned_rooms"]["multi_room"] == [room_id]
        other_node = other.node.router.lease
        assert node["peers"] == [{"owner": other_node.owner, "link": other_node.address, "connected": False}]
        assert node["state"] == "serving" and node["redis"] == "up"
