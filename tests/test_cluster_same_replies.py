"""Both client generations get the same replies from three nodes (requests spread over them) as from one process."""

from __future__ import annotations

import re
from typing import Any

from tests.bodies import joining, member_fields
from tests.cluster_helpers import open_nodes
from tests.conftest import Api, make_settings, open_roomd
from tests.redis_server import RedisServer

SEED = "multi_room"
LIVE = "live_room"
FIELD = {"roomID": "room_live", "userID": "anchor"}

# (kind, endpoint, body); "$1", "$2"... stand for the roomIDs the server made, in order
SCRIPT: list[tuple[str, str, dict[str, Any]]] = [
    (SEED, "get_push_url", {"userID": "alice"}),
    (SEED, "create_room", member_fields("alice", roomName="seed room")),
    (SEED, "create_room", member_fields("bob", roomName="second")),
    (SEED, "add_pusher", joining("carol", "$1")),
    (SEED, "add_pusher", joining("dave", "$1")),
    (SEED, "add_pusher", joining("carol", "$1", userName="carol again")),
    (SEED, "get_pushers", {"roomID": "$1"}),
    (SEED, "pusher_heartbeat", {"roomID": "$1", "userID": "dave"}),
    (SEED, "pusher_heartbeat", {"roomID": "$1", "userID": "nobody"}),
    (SEED, "pusher_heartbeat", {"roomID": "room_none", "userID": "dave"}),
    (SEED, "get_room_list", {}),
    (SEED, "get_room_list", {"index": 1, "cnt": 1}),
    (SEED, "get_room_list", {"index": -1}),
    (SEED, "delete_pusher", {"roomID": "$1", "userID": "dave"}),
    (SEED, "delete_pusher", {"roomID": "$1", "userID": "dave"}),
    (SEED, "destroy_room", {"roomID": "$1", "userID": "carol"}),
    (SEED, "create_room", {"userID": "erin", "roomInfo": "later", "roomID": "room_fixed"}),
    (SEED, "create_room", {"userID": "frank", "roomInfo": "clash", "roomID": "room_fixed"}),
    *[(SEED, "add_pusher", joining(f"u{i}", "room_fixed")) for i in range(7)],
    (SEED, "get_pushers", {"roomID": "room_fixed"}),
    (SEED, "add_pusher", {"roomID": "room_fixed", "userID": "x"}),
    (SEED, "destroy_room", {"roomID": "$1", "userID": "alice"}),
    (SEED, "get_pushers", {"roomID": "$1"}),
    (SEED, "get_room_list", {"cnt": 100}),
    (LIVE, "add_pusher", joining("anchor", "room_live")),
    (LIVE, "add_pusher", joining("guest", "room_live")),
    (LIVE, "add_audience", {"roomID": "room_live", "userID": "v1", "userInfo": '{"userName":"v1"}'}),
    (LIVE, "add_audience", {"roomID": "room_live", "userID": "v2", "userInfo": "{}"}),
    (LIVE, "get_audiences", {"roomID": "room_live"}),
    (LIVE, "delete_audience", {"roomID": "room_live", "userID": "v1"}),
    (LIVE, "set_custom_field", {**FIELD, "fieldName": "t", "operation": "set", "value": "hi"}),
    (LIVE, "set_custom_field", {**FIELD, "fieldName": "n", "operation": "inc"}),
    (LIVE, "set_custom_field", {**FIELD, "fieldName": "n", "operation": "dec"}),
    (LIVE, "get_custom_info", {"roomID": "room_live"}),
    (LIVE, "get_pushers", {"roomID": "room_live"}),
    (LIVE, "get_room_list", {}),
    (LIVE, "delete_pusher", {"roomID": "room_live", "userID": "anchor"}),
    (LIVE, "get_pushers", {"roomID": "room_live"}),
]  # fmt: skip

SIGNED = re.compile(r"(txSecret=)[0-9a-f]+|(txTime=)[0-9A-F]+")


async def run_script(targets: list[Api]) -> list[tuple[int, str]]:
    """Each step on the next target in turn; the replies with made roomIDs and URL signatures masked."""
    made: list[str] = []
    replies = []
    for step, (kind, endpoint, body) in enumerate(SCRIPT):
        sent = {k: made[int(v[1:]) - 1] if isinstance(v, str) and v.startswith("$") else v for k, v in body.items()}
        reply = await targets[step % len(targets)].post(endpoint, sent, kind=kind)
        if endpoint == "create_room" and "roomID" not in body and reply.code == 0:
            made.append(reply.body["roomID"])
        text = SIGNED.sub(lambda m: (m.group(1) or m.group(2)) + "*", str(reply.body))
        for i, room_id in enumerate(made):
            text = text.replace(room_id, f"${i + 1}")
        replies.append((reply.status, text))
    return replies


async def test_three_nodes_answer_every_step_as_one_process(redis: RedisServer) -> None:
    async with open_roomd(make_settings(ROOMD_SERVER__PERSIST="false")) as alone:
        expected = await run_script([alone])
    async with open_nodes(redis.url, 3) as nodes:
        spread = await run_script(list(nodes))
    assert len(expected) == len(SCRIPT)
    for step, (one, many) in enumerate(zip(expected, spread, strict=True)):
        assert one == many, f"step {step} {SCRIPT[step][:2]}"
    codes = {int(m) for _, text in expected for m in re.findall(r"'code': (-?\d+)", text)}
    assert codes == {0, 1, 3, 5, 11, 5001}  # refusals are compared too
