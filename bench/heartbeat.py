"""Heartbeat throughput and latency at 32 connections, against the ceiling of the stack,
and eviction lateness of silent members while that load runs.

    .venv/bin/python bench/heartbeat.py [--duration 15] [--runs 3]

Per run: start roomd (`roomd serve`, embedded defaults, heartbeat_timeout 8 s)
and pre-create 100 rooms x 6 members over HTTP; 50 more members join and
then stay silent. wrk (`-t2 -c32`, bench/heartbeat.lua) posts
pusher_heartbeat round robin for the 600 live members. Then the same wrk
load against bench/echo_app.py, a bare ASGI app on hypercorn's trio worker.
Eviction lateness = (time of the `reason=timeout` log line) - (join +
heartbeat_timeout), both from roomd's own log. Prints medians over runs and
the roomd/echo ratio of the same run. Needs `wrk` (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "heartbeat.lua"
ROOMS, MEMBERS, SILENT = 100, 6, 50
HEARTBEAT_TIMEOUT = 8.0
CONNECTIONS = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_roomd(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ROOMD_")},
        "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "ROOMD_KINDS__MULTI_ROOM__MAX_IDLE_DURATION": "600",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "roomd.web.cli", "serve", "--port", str(port)],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=(workdir / "console.log").open("wb"),
    )
    wait_until_up(f"http://127.0.0.1:{port}/healthz")
    return process


def start_echo(port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "-k", "trio", "-b", f"127.0.0.1:{port}", "echo_app:app"],
        cwd=ROOT / "bench", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    wait_until_up(f"http://127.0.0.1:{port}/")
    return process


def populate(base: str, members_file: Path) -> list[tuple[str, str]]:
    """Create the rooms; return the silent members (room, user)."""
    lines, silent = [], []
    with httpx.Client(base_url=base, timeout=10) as http:
        def member(user: str) -> dict[str, str]:
            return {"userID": user, "userName": user, "userAvatar": "", "pushURL": f"rtmp://p/live/0_{user}"}

        for r in range(ROOMS):
            room = http.post("/weapp/multi_room/create_room", json={**member(f"r{r}m0"), "roomName": f"r{r}"}).json()["roomID"]
            lines.append(f"{room} r{r}m0")
            for m in range(1, MEMBERS):
                assert http.post("/weapp/multi_room/add_pusher", json={"roomID": room, **member(f"r{r}m{m}")}).json()["code"] == 0
                lines.append(f"{room} r{r}m{m}")
        for s in range(SILENT):
            room = http.post("/weapp/multi_room/create_room", json={"userID": f"host{s}", "roomInfo": "silent"}).json()["roomID"]
            assert http.post("/weapp/multi_room/add_pusher", json={"roomID": room, **member(f"silent{s}")}).json()["code"] == 0
            silent.append((room, f"silent{s}"))
    members_file.write_text("\n".join(lines) + "\n")
    return silent


def run_wrk(url: str, members_file: Path, duration: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency", "-s", str(LUA), url],
        env={**os.environ, "ROOMD_MEMBERS": str(members_file)}, capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    bad = int(re.search(r"non-ok replies: (\d+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "bad": bad, "socket_errors": 0 if not errors else 1}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


def eviction_lateness(log: str, silent: list[tuple[str, str]]) -> list[float]:
    joined: dict[str, float] = {}
    evicted: dict[str, float] = {}
    for line in log.splitlines():
        stamp = LOG_TIME.match(line)
        if not stamp:
            continue
        at = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        user = re.search(r"user=(silent\d+)", line)
        if not user:
            continue
        if "member joined" in line:
            joined[user.group(1)] = at
        elif "reason=timeout" in line:
            evicted[user.group(1)] = at
    return [evicted[u] - (joined[u] + HEARTBEAT_TIMEOUT) for _, u in silent if u in evicted and u in joined]


def one_run(duration: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        members_file = workdir / "members.txt"
        roomd_port, echo_port = free_port(), free_port()
        roomd = start_roomd(roomd_port, workdir)
        try:
            silent = populate(f"http://127.0.0.1:{roomd_port}", members_file)
            loaded = run_wrk(f"http://127.0.0.1:{roomd_port}/weapp/multi_room/pusher_heartbeat", members_file, duration)
        finally:
            roomd.send_signal(signal.SIGTERM)
            roomd.wait(timeout=60)
            log = (workdir / "console.log").read_text()
        echo = start_echo(echo_port)
        try:
            ceiling = run_wrk(f"http://127.0.0.1:{echo_port}/", members_file, duration)
        finally:
            echo.send_signal(signal.SIGTERM)
            echo.wait(timeout=30)
    lateness = eviction_lateness(log, silent)
    assert len(lateness) == SILENT, f"only {len(lateness)} of {SILENT} silent members were evicted"
    return {
        "roomd_rps": loaded["rps"], "roomd_p50": loaded["p50"], "roomd_p99": loaded["p99"], "roomd_bad": loaded["bad"],
        "echo_rps": ceiling["rps"], "echo_p99": ceiling["p99"], "ratio": loaded["rps"] / ceiling["rps"],
        "late_p50": statistics.median(lateness) * 1000,
        "late_p99": sorted(lateness)[min(len(lateness) - 1, int(0.99 * len(lateness)))] * 1000,
        "late_max": max(lateness) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/heartbeat.py needs wrk: apt-get install wrk")
    runs = [one_run(args.duration) for _ in range(args.runs)]
    for i, r in enumerate(runs, 1):
        print(f"run {i}: roomd {r['roomd_rps']:.0f} req/s (p99 {r['roomd_p99']:.1f} ms), echo {r['echo_rps']:.0f} req/s, ratio {r['ratio']:.2f}")
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"heartbeat, {CONNECTIONS} connections, {args.duration} s, median of {args.runs} runs:")
    print(f"  roomd   {med['roomd_rps']:8.0f} req/s   p50 {med['roomd_p50']:6.1f} ms   p99 {med['roomd_p99']:6.1f} ms   non-ok replies {med['roomd_bad']:.0f}")
    print(f"  echo    {med['echo_rps']:8.0f} req/s   p99 {med['echo_p99']:6.1f} ms   (bare ASGI on hypercorn-trio)")
    print(f"  ratio roomd/echo {med['ratio']:.2f} (median of per-run ratios)")
    print(f"eviction lateness under that load ({SILENT} silent members, heartbeat_timeout {HEARTBEAT_TIMEOUT:g} s):")
    print(f"  p50 {med['late_p50']:.0f} ms   p99 {med['late_p99']:.0f} ms   max {med['late_max']:.0f} ms")


if __name__ == "__main__":
    main()
