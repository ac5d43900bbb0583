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


def start_roomd(port: int, workdir: Path, settings: dict[str, str], *, console: Path | None = None) -> subprocess.Popen[bytes]:
    """roomd on `port` with only the ROOMD_* `settings` given; its console goes to `console`."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ROOMD_")}, **settings}
    process = subprocess.Popen(
        [sys.executable, "-m", "roomd.web.cli", "serve", "--port", str(port)],
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
