"""`roomd serve --workers N`: N nodes on one port, a dead one started again, all stopped by one SIGTERM."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import coredis
import httpx
import pytest

from tests.bodies import joining, member_fields
from tests.conftest import eventually
from tests.redis_server import RedisServer
from tests.server_process import failing_roomd, running_roomd

pytestmark = pytest.mark.slow

NODE_STARTED = re.compile(r"node (\d) started pid=(\d+)")


def node_pids(output: list[str]) -> dict[int, int]:
    """The latest pid of each node, from the supervisor's log."""
    pids: dict[int, int] = {}
    for line in output:
        found = NODE_STARTED.search(line)
        if found:
            pids[int(found[1])] = int(found[2])
    return pids


async def test_two_workers_share_the_port_and_a_killed_one_comes_back(tmp_path: Path, redis: RedisServer) -> None:
    env = {
        "ROOMD_CLUSTER__REDIS_URL": redis.url,
        "ROOMD_CLUSTER__LEASE_MS": "1000",
        "ROOMD_CLUSTER__RENEW_INTERVAL": "0.2",
    }
    async with running_roomd(tmp_path, args=("--workers", "2"), **env) as server, httpx.AsyncClient() as http:
        await eventually(
            lambda: len(node_pids(server.output)) == 2 and len(server.lines_about("roomd listening on")) == 2
        )
        base = server.base_url
        room = (await http.post(f"{base}/weapp/multi_room/create_room", json=member_fields("a", roomName="w"))).json()
        answered_by = set()
        for i in range(20):  # new connections: the kernel spreads them over both nodes
            async with httpx.AsyncClient() as fresh:
                reply = await fresh.post(
                    f"{base}/weapp/multi_room/add_pusher", json=joining(f"u{i % 4}", room["roomID"])
                )
                assert reply.json()["code"] == 0
        for node in (0, 1):
            log = tmp_path / "logs" / f"node-{node}" / "response"
            answered_by.update({node} if any("add_pusher" in f.read_text() for f in log.glob("*.log")) else set())
        assert answered_by == {0, 1}

        victim = node_pids(server.output)[0]
        os.kill(victim, signal.SIGKILL)
        await eventually(
            lambda: node_pids(server.output)[0] != victim and len(server.lines_about("roomd listening on")) == 3
        )
        assert server.lines_about("node 0 pid=") and "starting it again" in server.lines_about("node 0 pid=")[-1]
        for _ in range(10):
            async with httpx.AsyncClient() as fresh:
                reply = await fresh.post(f"{base}/weapp/multi_room/get_pushers", json={"roomID": room["roomID"]})
                assert reply.json()["code"] == 0 and len(reply.json()["pushers"]) == 5
    assert server.process.returncode == 0
    assert server.lines_about("node 0 stopped status=0") and server.lines_about("node 1 stopped status=0")


async def test_workers_without_redis_is_one_line_and_status_2(tmp_path: Path) -> None:
    failed = await failing_roomd(tmp_path, args=("--workers", "2"))
    assert failed.returncode == 2
    assert failed.output == [
        "roomd: configuration error: --workers > 1 needs cluster.redis_url (nodes share rooms through Redis)"
    ]


async def test_workers_with_a_fixed_link_port_is_one_line_and_status_2(tmp_path: Path, redis: RedisServer) -> None:
    failed = await failing_roomd(
        tmp_path, args=("--workers", "2"), ROOMD_CLUSTER__REDIS_URL=redis.url, ROOMD_CLUSTER__LINK_PORT="7000"
    )
    assert failed.returncode == 2
    assert failed.output == [
        "roomd: configuration error: cluster.link_port: must be 0 with --workers > 1 (each node takes its own)"
    ]


async def test_a_node_that_cannot_start_stops_the_workers_with_status_2(tmp_path: Path, redis: RedisServer) -> None:
    async with coredis.Redis.from_url(redis.url, verify_version=False) as client:
        await client.set("roomd:link_secret", "")  # edited by hand: no node can join the cluster with it
    failed = await failing_roomd(tmp_path, args=("--workers", "2"), ROOMD_CLUSTER__REDIS_URL=redis.url)
    assert failed.returncode == 2, failed.output
    corrupt = [line for line in failed.output if line.startswith("roomd: the cluster's link_secret")]
    assert corrupt and all("is corrupt" in line for line in corrupt), failed.output
    assert len(NODE_STARTED.findall("\n".join(failed.output))) == 2  # each node once: never started again
    assert any("cannot start (status 2" in line for line in failed.output)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def test_nodes_stop_with_a_supervisor_killed_outright(tmp_path: Path, redis: RedisServer) -> None:
    async with running_roomd(tmp_path, args=("--workers", "2"), ROOMD_CLUSTER__REDIS_URL=redis.url) as server:
        await eventually(lambda: len(server.lines_about("roomd listening on")) == 2)
        nodes = list(node_pids(server.output).values())
        assert all(alive(pid) for pid in nodes)
        server.process.kill()  # SIGKILL: it passes nothing on
        await eventually(lambda: not any(alive(pid) for pid in nodes), within=15)


async def test_sighup_stops_roomd_like_sigterm(tmp_path: Path) -> None:
    async with running_roomd(tmp_path) as server:
        server.process.send_signal(signal.SIGHUP)
        await eventually(lambda: server.process.poll() is not None, within=15)
    assert server.process.returncode == 0
    assert server.lines_about("received SIGHUP")
