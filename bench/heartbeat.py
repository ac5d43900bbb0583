"""Heartbeat throughput and latency at 32 connections, against the ceiling of the stack,
and eviction lateness of silent members while that load runs.

    .venv/bin/python bench/heartbeat.py [--duration 15] [--runs 3]

Starts roomd (`roomd serve`, embedded defaults; heartbeat_timeout 8 s for the silent
members' double_room, an hour for the live ones) and
bench/echo_app.py (a bare ASGI app on hypercorn's trio worker: the ceiling
of this stack here) side by side, pre-creates 100 rooms x 6 members over
HTTP, then alternates wrk slices (`-t2 -c32`, bench/heartbeat.lua posting
pusher_heartbeat round robin for the 600 members): roomd, echo, roomd,
echo... so that each ratio compares neighbours in time on a noisy machine.
Just before the first roomd slice 50 more members join and stay silent;
eviction lateness = (time of their `reason=timeout` log line) - (join +
heartbeat_timeout), both from roomd's own log, while that slice runs.
Prints each pair and the medians. Needs `wrk` (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roomd_process import free_port, start_roomd, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "heartbeat.lua"
ROOMS, MEMBERS, SILENT = 100, 6, 50
HEARTBEAT_TIMEOUT = 8.0
CONNECTIONS = 32


def start_roomd_for_heartbeats(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    settings = {
        # live members (multi_room) outlast the echo slices; silent ones (double_room) are due soon
        "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "3600",
        "ROOMD_KINDS__DOUBLE_ROOM__HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "ROOMD_KINDS__DOUBLE_ROOM__CREATOR_LEAVE_CLOSES_ROOM": "false",
    }
    return start_roomd(port, workdir, settings, console=workdir / "console.log")


def start_echo(port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "-k", "trio", "-b", f"127.0.0.1:{port}", "echo_app:app"],
        cwd=ROOT / "bench",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    wait_until_up(f"http://127.0.0.1:{port}/")
    return process


def _member(user: str) -> dict[str, str]:
    return {"userID": user, "userName": user, "userAvatar": "", "pushURL": f"rtmp://p/live/0_{user}"}


def populate(base: str, members_file: Path) -> None:
    lines = []
    with httpx.Client(base_url=base, timeout=10) as http:
        for r in range(ROOMS):
            room = http.post("/weapp/multi_room/create_room", json={**_member(f"r{r}m0"), "roomName": f"r{r}"}).json()[
                "roomID"
            ]
            lines.append(f"{room} r{r}m0")
            for m in range(1, MEMBERS):
                assert (
                    http.post("/weapp/multi_room/add_pusher", json={"roomID": room, **_member(f"r{r}m{m}")}).json()[
                        "code"
                    ]
                    == 0
                )
                lines.append(f"{room} r{r}m{m}")
    members_file.write_text("\n".join(lines) + "\n")


def add_silent_members(base: str) -> list[tuple[str, str]]:
    """Members that join and then never heartbeat: each is due at join + HEARTBEAT_TIMEOUT."""
    silent = []
    with httpx.Client(base_url=base, timeout=10) as http:
        for s in range(SILENT):
            room = http.post(
                "/weapp/double_room/create_room", json={"userID": f"host{s}", "roomInfo": "silent"}
            ).json()["roomID"]
            assert (
                http.post("/weapp/double_room/add_pusher", json={"roomID": room, **_member(f"silent{s}")}).json()[
                    "code"
                ]
                == 0
            )
            silent.append((room, f"silent{s}"))
    return silent


def run_wrk(url: str, members_file: Path, duration: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency", "-s", str(LUA), url],
        env={**os.environ, "ROOMD_MEMBERS": str(members_file)},
        capture_output=True,
        text=True,
        check=True,
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


def measure(duration: int, slices: int) -> list[dict[str, float]]:
    """Alternate wrk slices against roomd and the echo app; one result per pair of slices."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        members_file = workdir / "members.txt"
        roomd_port, echo_port = free_port(), free_port()
        roomd = start_roomd_for_heartbeats(roomd_port, workdir)
        echo = start_echo(echo_port)
        roomd_url = f"http://127.0.0.1:{roomd_port}"
        try:
            populate(roomd_url, members_file)
            silent: list[tuple[str, str]] = []
            for index in range(slices):
                if index == 0:  # due during the first roomd slice, which is under load
                    silent = add_silent_members(roomd_url)
                loaded = run_wrk(f"{roomd_url}/weapp/multi_room/pusher_heartbeat", members_file, duration)
                ceiling = run_wrk(f"http://127.0.0.1:{echo_port}/", members_file, duration)
                results.append(
                    {
                        "roomd_rps": loaded["rps"],
                        "roomd_p50": loaded["p50"],
                        "roomd_p99": loaded["p99"],
                        "roomd_bad": loaded["bad"],
                        "echo_rps": ceiling["rps"],
                        "echo_p99": ceiling["p99"],
                        "ratio": loaded["rps"] / ceiling["rps"],
                    }
                )
        finally:
            roomd.send_signal(signal.SIGTERM)
            echo.send_signal(signal.SIGTERM)
            roomd.wait(timeout=60)
            echo.wait(timeout=30)
            log = (workdir / "console.log").read_text()
    lateness = eviction_lateness(log, silent)
    assert len(lateness) == SILENT, f"only {len(lateness)} of {SILENT} silent members were evicted"
    ordered = sorted(lateness)
    for result in results:
        result.update(
            late_p50=statistics.median(ordered) * 1000,
            late_p99=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
            late_max=ordered[-1] * 1000,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk slice (> 8)")
    parser.add_argument("--runs", type=int, default=5, help="pairs of slices (roomd, then echo)")
    args = parser.parse_args()
    if args.duration <= HEARTBEAT_TIMEOUT:
        sys.exit(f"--duration must exceed {HEARTBEAT_TIMEOUT:g} s: silent members are due within the first roomd slice")
    if shutil.which("wrk") is None:
        sys.exit("bench/heartbeat.py needs wrk: apt-get install wrk")
    runs = measure(args.duration, args.runs)
    for i, r in enumerate(runs, 1):
        print(
            f"pair {i}: roomd {r['roomd_rps']:.0f} req/s (p99 {r['roomd_p99']:.1f} ms), "
            f"echo {r['echo_rps']:.0f} req/s, ratio {r['ratio']:.2f}"
        )
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"heartbeat, {CONNECTIONS} connections, {args.duration} s slices, median of {args.runs} pairs:")
    print(
        f"  roomd   {med['roomd_rps']:8.0f} req/s   p50 {med['roomd_p50']:6.1f} ms   "
        f"p99 {med['roomd_p99']:6.1f} ms   non-ok replies {med['roomd_bad']:.0f}"
    )
    print(f"  echo    {med['echo_rps']:8.0f} req/s   p99 {med['echo_p99']:6.1f} ms   (bare ASGI on hypercorn-trio)")
    print(f"  ratio roomd/echo {med['ratio']:.2f} (median of per-run ratios)")
    print(f"eviction lateness under that load ({SILENT} silent members, heartbeat_timeout {HEARTBEAT_TIMEOUT:g} s):")
    print(f"  p50 {med['late_p50']:.0f} ms   p99 {med['late_p99']:.0f} ms   max {med['late_max']:.0f} ms")


if __name__ == "__main__":
    main()
