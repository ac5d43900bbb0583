"""Cluster mode, measured: throughput of `--workers 2` against one process, CPU per forwarded and per
relayed request, takeover time after kill -9, and get_room_list latency over many rooms.

    .venv/bin/python bench/cluster.py [--duration 10] [--runs 3] [--takeover-rooms 2000]
                                      [--listing-rooms 10000] [--only throughput,cpu,takeover,listing]

Everything runs on loopback: a redis-server (appendfsync always) and roomd processes started here.

- throughput: one `roomd serve` (no Redis, SQLite) and one `roomd serve --workers 2` (Redis), each
  with 100 rooms x 6 members, alternating wrk slices (`-t2 -c32`, bench/heartbeat.lua) so that each
  ratio compares neighbours in time; prints each pair, then the medians.
- cpu: two nodes on their own ports, rooms owned by the first. get_pushers sent to the owner
  (local), to the other node (forwarded), and heartbeats sent to the other node once it watches
  the rooms (relayed, answered there): CPU seconds of both processes (/proc) per request.
- takeover: three nodes; the first makes --takeover-rooms rooms and is killed (-9); the time until
  the others run every room (their roomd_cluster_takeovers), from the kill and from lease expiry.
- listing: three nodes holding --listing-rooms rooms with a member each, made through all three;
  get_room_list (cnt 20, random index) from each node in turn: p50 and p99 seen by the client.
Needs wrk and redis-server (apt-get install wrk redis-server).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heartbeat import run_wrk
from roomd_process import NO_ABUSE_LIMITS, free_port, wait_until_up

ROOMS, MEMBERS = 100, 6
FAST_LEASE = {"ROOMD_CLUSTER__LEASE_MS": "3000", "ROOMD_CLUSTER__RENEW_INTERVAL": "1.0"}


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "yes", "--appendfsync", "always"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def start_node(port: int, workdir: Path, env: dict[str, str], *, workers: int = 1) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("ROOMD_")}, **NO_ABUSE_LIMITS, **env}
    environment.setdefault("ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT", "3600")
    command = [sys.executable, "-m", "roomd.cli", "serve", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(
        command, cwd=workdir, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until_up(f"http://127.0.0.1:{port}/healthz")
    return process


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=60)


def member(user: str) -> dict[str, str]:
    return {"userID": user, "userName": user, "userAvatar": "", "pushURL": f"rtmp://p/live/0_{user}"}


def populate(bases: list[str], members_file: Path, rooms: int = ROOMS, members: int = MEMBERS) -> list[str]:
    """`rooms` rooms of `members`, the calls spread over `bases`; one "roomID userID" line per member."""
    lines, made = [], []
    clients = [httpx.Client(base_url=base, timeout=10) for base in bases]
    try:
        for r in range(rooms):
            http = clients[r % len(clients)]
            room = http.post("/weapp/multi_room/create_room", json={**member(f"r{r}m0"), "roomName": f"r{r}"}).json()
            made.append(room["roomID"])
            lines.append(f"{room['roomID']} r{r}m0")
            for m in range(1, members):
                body = {"roomID": room["roomID"], **member(f"r{r}m{m}")}
                assert (
                    clients[(r + m) % len(clients)].post("/weapp/multi_room/add_pusher", json=body).json()["code"] == 0
                )
                lines.append(f"{room['roomID']} r{r}m{m}")
    finally:
        for http in clients:
            http.close()
    members_file.write_text("\n".join(lines) + "\n")
    return made


# --- throughput ---------------------------------------------------------------------------------


def throughput(duration: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        work = Path(tmp)
        one_port, two_port = free_port(), free_port()
        one = start_node(one_port, work / "one", {})
        two = start_node(two_port, work / "two", {"ROOMD_CLUSTER__REDIS_URL": redis_url, **FAST_LEASE}, workers=2)
        try:
            time.sleep(2)  # both nodes of --workers hold their leases
            one_members, two_members = work / "one.txt", work / "two.txt"
            populate([f"http://127.0.0.1:{one_port}"], one_members)
            populate([f"http://127.0.0.1:{two_port}"], two_members)
            ratios = []
            print(f"{'one process rps':>16} {'p99 ms':>7} {'--workers 2 rps':>16} {'p99 ms':>7} {'ratio':>6}")
            for _ in range(runs):
                single = run_wrk(
                    f"http://127.0.0.1:{one_port}/weapp/multi_room/pusher_heartbeat", one_members, duration
                )
                double = run_wrk(
                    f"http://127.0.0.1:{two_port}/weapp/multi_room/pusher_heartbeat", two_members, duration
                )
                assert single["bad"] == 0 and double["bad"] == 0, (single, double)
                ratios.append(double["rps"] / single["rps"])
                print(
                    f"{single['rps']:16.0f} {single['p99']:7.1f} {double['rps']:16.0f} {double['p99']:7.1f}"
                    f" {ratios[-1]:6.2f}"
                )
            print(f"median ratio --workers 2 / one process: {statistics.median(ratios):.2f}")
        finally:
            stop(one, two)


# --- CPU per request ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(url: str, members_file: Path, pids: list[int], duration: int) -> tuple[float, float, float]:
    """(CPU µs per request of all `pids`, requests/s, p99 ms) while wrk drives `url`."""
    before = sum(cpu_seconds(pid) for pid in pids)
    started = time.monotonic()
    result = run_wrk(url, members_file, duration)
    elapsed = time.monotonic() - started
    spent = sum(cpu_seconds(pid) for pid in pids) - before
    assert result["bad"] == 0, result
    return spent / (result["rps"] * elapsed) * 1e6, result["rps"], result["p99"]


def cpu(duration: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        work = Path(tmp)
        env = {"ROOMD_CLUSTER__REDIS_URL": redis_url, **FAST_LEASE}
        owner_port, other_port = free_port(), free_port()
        owner = start_node(owner_port, work / "owner", env)
        other = start_node(other_port, work / "other", env)
        pids = [owner.pid, other.pid]
        try:
            members_file = work / "members.txt"
            populate([f"http://127.0.0.1:{owner_port}"], members_file)
            owner_base, other_base = f"http://127.0.0.1:{owner_port}", f"http://127.0.0.1:{other_port}"
            with httpx.Client(timeout=10) as http:  # the other node watches every room: heartbeats are relayed
                for line in members_file.read_text().splitlines():
                    room, user = line.split()
                    http.post(f"{other_base}/weapp/multi_room/pusher_heartbeat", json={"roomID": room, "userID": user})
            rows: dict[str, list[tuple[float, float, float]]] = {
                "local": [],
                "forwarded": [],
                "local heartbeat": [],
                "relayed": [],
            }
            for _ in range(runs):
                os.environ["ROOMD_HEARTBEAT_PATH"] = "/weapp/multi_room/get_pushers"
                rows["local"].append(cpu_per_request(f"{owner_base}/", members_file, pids, duration))
                rows["forwarded"].append(cpu_per_request(f"{other_base}/", members_file, pids, duration))
                os.environ["ROOMD_HEARTBEAT_PATH"] = "/weapp/multi_room/pusher_heartbeat"
                rows["local heartbeat"].append(cpu_per_request(f"{owner_base}/", members_file, pids, duration))
                rows["relayed"].append(cpu_per_request(f"{other_base}/", members_file, pids, duration))
            print(f"{'request':>26} {'CPU µs/request':>15} {'rps':>7} {'p99 ms':>7}   (medians of {runs})")
            medians = {}
            for name, label in (
                ("local", "get_pushers at the owner"),
                ("forwarded", "get_pushers forwarded"),
                ("local heartbeat", "heartbeat at the owner"),
                ("relayed", "heartbeat relayed"),
            ):
                values = rows[name]
                medians[name] = statistics.median(v[0] for v in values)
                print(
                    f"{label:>26} {medians[name]:15.0f} {statistics.median(v[1] for v in values):7.0f}"
                    f" {statistics.median(v[2] for v in values):7.1f}"
                )
            print(f"forwarding costs {medians['forwarded'] - medians['local']:.0f} µs of CPU more than a local call")
        finally:
            os.environ.pop("ROOMD_HEARTBEAT_PATH", None)
            stop(owner, other)


# --- takeover -------------------------------------------------------------------------------------


def metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[-1])
    return 0.0


async def make_rooms(base: str, count: int, *, concurrency: int = 32) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)  # no churn
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        numbers = iter(range(count))

        async def worker() -> None:
            for n in numbers:
                reply = await http.post("/weapp/multi_room/create_room", json={**member(f"t{n}"), "roomName": "t"})
                assert reply.json()["code"] == 0, reply.text

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)


def takeover(rooms: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        work = Path(os.environ.get("ROOMD_BENCH_KEEP", tmp))
        env = {"ROOMD_CLUSTER__REDIS_URL": redis_url, **FAST_LEASE}
        ports = [free_port() for _ in range(3)]
        nodes = [start_node(port, work / f"n{i}", env) for i, port in enumerate(ports)]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            trio.run(make_rooms, bases[0], rooms)
            nodes[0].kill()
            killed = time.monotonic()
            nodes[0].wait()
            while sum(metric(base, "roomd_cluster_takeovers") for base in bases[1:]) < rooms:
                if time.monotonic() - killed > 60:
                    raise RuntimeError("the rooms were not taken over within 60 s")
                time.sleep(0.02)
            taken = time.monotonic() - killed
            lease = int(FAST_LEASE["ROOMD_CLUSTER__LEASE_MS"]) / 1000
            renew = float(FAST_LEASE["ROOMD_CLUSTER__RENEW_INTERVAL"])
            print(
                f"takeover of {rooms} rooms after kill -9: every room runs again {taken:.2f} s after the kill "
                f"(lease {lease:g} s renewed every {renew:g} s: it ran out {lease - renew:g} to {lease:g} s after)"
            )
        finally:
            stop(*nodes)  # the killed one too, should the run have failed before the kill


# --- listing ----------------------------------------------------------------------------------------


async def page_latencies(bases: list[str], total_rooms: int, requests: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(requests):
            base = bases[n % len(bases)]
            index = random.randrange(max(1, total_rooms - 20))
            started = time.perf_counter()
            reply = await http.post(f"{base}/weapp/multi_room/get_room_list", json={"index": index, "cnt": 20})
            latencies.append((time.perf_counter() - started) * 1000)
            assert len(reply.json()["rooms"]) == 20
    return latencies


def listing(rooms: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        work = Path(tmp)
        env = {"ROOMD_CLUSTER__REDIS_URL": redis_url, **FAST_LEASE}
        ports = [free_port() for _ in range(3)]
        nodes = [start_node(port, work / f"n{i}", env) for i, port in enumerate(ports)]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            for i, base in enumerate(bases):
                trio.run(make_rooms, base, rooms // 3 + (1 if i < rooms % 3 else 0))
            latencies = sorted(trio.run(page_latencies, bases, rooms, 2000))
            p50, p99 = statistics.median(latencies), latencies[int(0.99 * len(latencies))]
            print(
                f"get_room_list (cnt 20, random index) over {rooms} rooms on 3 nodes: "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            )
        finally:
            stop(*nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk slice")
    parser.add_argument("--runs", type=int, default=3, help="slices per measurement")
    parser.add_argument("--takeover-rooms", type=int, default=2000)
    parser.add_argument("--listing-rooms", type=int, default=10_000)
    parser.add_argument("--only", default="throughput,cpu,takeover,listing", help="which parts, comma-separated")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if "throughput" in parts:
        throughput(args.duration, args.runs)
    if "cpu" in parts:
        cpu(args.duration, args.runs)
    if "takeover" in parts:
        takeover(args.takeover_rooms)
    if "listing" in parts:
        listing(args.listing_rooms)


if __name__ == "__main__":
    main()
