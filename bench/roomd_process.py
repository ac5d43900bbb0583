"""A `roomd serve` process for the benchmarks: start it on a free port, wait for it, read its RSS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


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


# a benchmark drives thousands of rooms from one address: the abuse limits would be what it measures
NO_ABUSE_LIMITS = {
    "ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS": "0",
    "ROOMD_LIMITS__CREATE_RATE_PER_USER": "0",
    "ROOMD_LIMITS__LOGIN_RATE_PER_ADDRESS": "0",
    **{
        f"ROOMD_KINDS__{kind}__{cap}": "0"
        for kind in ("MULTI_ROOM", "DOUBLE_ROOM")
        for cap in ("MAX_WAITING_ROOMS", "MAX_ROOMS_PER_CREATOR", "MAX_ROOMS_PER_ADDRESS")
    },
}


def start_roomd(
    port: int, workdir: Path, settings: dict[str, str], *, console: Path | None = None
) -> subprocess.Popen[bytes]:
    """roomd on `port` with the ROOMD_* `settings` given (abuse limits off unless they say otherwise);
    its console goes to `console`. `settings` may hold other environment variables too (PYTHONMALLOC):
    only the ROOMD_* ones of this process are left out."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ROOMD_")}, **NO_ABUSE_LIMITS, **settings}
    process = subprocess.Popen(
        [sys.executable, "-m", "roomd.cli", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=console.open("wb") if console is not None else subprocess.DEVNULL,
    )
    wait_until_up(f"http://127.0.0.1:{port}/healthz")
    return process


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
