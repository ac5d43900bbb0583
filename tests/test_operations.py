"""What operators see: exact metrics, the live actor tree, readiness, JSON logs."""

from __future__ import annotations

import json
import sys
from typing import Any

import trio
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from roomd.config import LogSettings
from roomd.logs.setup import configure_logging
from tests.bodies import joining, member_fields
from tests.conftest import Api


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await api.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_after_a_scripted_scenario(api: Api, autojump_clock: trio.abc.Clock) -> None:
    room_a = (await api.post("create_room", {**member_fields("alice"), "roomName": "a"})).body["roomID"]
    for user in ("bob", "carol"):
        assert (await api.post("add_pusher", joining(user, room_a))).code == 0
    room_b = (await api.post("create_room", {**member_fields("dave"), "roomName": "b"})).body["roomID"]
    assert (await api.post("create_room", {"userID": "erin", "roomInfo": "waits"})).code == 0
    assert (await api.post("get_pushers", {"roomID": "nope"})).code == 3

    heartbeats = 0
    for _ in range(6):  # 31 s: carol stops heartbeating and is evicted, erin's room idles out
        await trio.sleep(5.1)
        for room, user in ((room_a, "alice"), (room_a, "bob"), (room_b, "dave")):
            assert (await api.post("pusher_heartbeat", {"roomID": room, "userID": user})).code == 0
            heartbeats += 1
    await trio.sleep(0.5)
    assert (await api.post("destroy_room", {"roomID": room_b, "userID": "dave"})).code == 0

    m = await scrape(api)
    assert value(m, "roomd_rooms", kind="multi_room", state="active") == 1
    assert value(m, "roomd_rooms", kind="multi_room", state="waiting") == 0
    assert value(m, "roomd_rooms", kind="double_room", state="active") == 0
    assert value(m, "roomd_members", kind="multi_room") == 2
    assert value(m, "roomd_room_closes_total", kind="multi_room", reason="idle") == 1
    assert value(m, "roomd_room_closes_total", kind="multi_room", reason="destroyed") == 1
    assert value(m, "roomd_member_departures_total", kind="multi_room", reason="timeout") == 1
    assert value(m, "roomd_member_departures_total", kind="multi_room", reason="room_closed") == 1
    assert ("roomd_member_departures_total", (("kind", "multi_room"), ("reason", "left"))) not in m
    assert value(m, "roomd_requests_total", route="multi_room/create_room", code="0") == 3
    assert value(m, "roomd_requests_total", route="multi_room/add_pusher", code="0") == 2
    assert value(m, "roomd_requests_total", route="multi_room/get_pushers", code="3") == 1
    assert value(m, "roomd_requests_total", route="multi_room/pusher_heartbeat", code="0") == heartbeats == 18
    assert value(m, "roomd_request_duration_seconds_count", route="multi_room/pusher_heartbeat") == 18
    assert value(m, "roomd_im_calls_total", api="create_group", outcome="skipped") == 3
    # joins of alice, bob, carol and dave, and carol's eviction
    assert value(m, "roomd_im_calls_total", api="send_group_system_notification", outcome="skipped") == 5
    assert value(m, "roomd_im_calls_total", api="destroy_group", outcome="skipped") == 2
    assert value(m, "roomd_im_queue_depth") == 0
    assert value(m, "roomd_directory_mailbox_depth", kind="multi_room") == 0
    assert value(m, "roomd_room_mailbox_depth_max", kind="multi_room") == 0


async def test_debug_actors_shows_rooms_under_their_kind(api: Api) -> None:
    multi = (await api.post("create_room", {**member_fields("alice"), "roomName": "a"})).body["roomID"]
    await api.post("add_pusher", joining("bob", multi))
    double = (await api.post("create_room", {"userID": "carol", "roomInfo": "b"}, kind="double_room")).body["roomID"]
    reply = await api.get("/debug/actors")
    tree = reply.body["tree"]
    assert tree["path"] == "root" and tree["state"] == "running"
    im, *directories = tree["children"]
    assert im["path"] == "root/im" and im["kind"] == "im"
    by_kind = {d["path"]: d for d in directories}
    assert set(by_kind) == {"root/multi_room", "root/double_room", "root/live_room"}
    [multi_node] = by_kind["root/multi_room"]["children"]
    assert multi_node["path"] == f"root/multi_room/{multi}" and multi_node["kind"] == "room"
    assert multi_node["state"] == "active" and multi_node["members"] == 2
    assert 19 < multi_node["next_deadline_in"] <= 20
    assert multi_node["mailbox"] == {"depth": 0, "capacity": 256, "delivered": 2}  # bob joining, then this describe
    [double_node] = by_kind["root/double_room"]["children"]
    assert double_node["path"] == f"root/double_room/{double}" and double_node["state"] == "waiting"
    assert double_node["members"] == 0 and 29 < double_node["next_deadline_in"] <= 30
    limited = await api.get("/debug/actors?limit=0")
    shown = {d["path"]: (d["children"], d["rooms"]) for d in limited.body["tree"]["children"][1:]}
    assert shown == {"root/multi_room": ([], 1), "root/double_room": ([], 1), "root/live_room": ([], 0)}


async def test_readyz_is_503_while_starting_and_while_draining(api: Api) -> None:
    assert (await api.get("/readyz")).status == 200
    api.ctx.ready = False
    assert (await api.get("/readyz")).body["detail"] == "the server is starting"
    api.ctx.ready = True
    api.ctx.draining = True
    draining = await api.get("/readyz")
    assert draining.status == 503 and draining.body["code"] == 12
    response = await api.http.post("/weapp/multi_room/get_room_list", json={})
    assert response.status_code == 503 and response.headers["Connection"] == "close"
    assert (await api.http.get("/metrics")).status_code == 200


def test_json_log_lines_carry_the_actor_path(tmp_path: Any, capsys: Any) -> None:
    configure_logging(LogSettings(dir=str(tmp_path), format="json"))
    try:
        logger.bind(actor="root/multi_room/room_x").info("member joined user={}", "alice")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.bind(actor="root/im").exception("it broke")
    finally:
        logger.remove()
        logger.configure(patcher=None, extra={})
        logger.add(sys.stderr)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["actor"] == "root/multi_room/room_x" and lines[0]["message"] == "member joined user=alice"
    assert lines[0]["level"] == "INFO" and "time" in lines[0]
    assert lines[1]["actor"] == "root/im" and "ValueError: boom" in lines[1]["exception"]
    error_file = next((tmp_path / "error").glob("error-*.log"))
    [stored] = [json.loads(line) for line in error_file.read_text().splitlines()]
    assert stored["actor"] == "root/im" and stored["level"] == "ERROR"
