"""A real redis-server on loopback for the cluster tests, started and stopped by them.

The binary is Debian's `redis-server` (`make test` installs it when missing;
ROOMD_TEST_REDIS_SERVER names another). Durability as the README asks for
it: an append-only file fsynced on every write, so a restart keeps what
was acknowledged.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOOPBACK = "127.0.0.1"


def redis_binary() -> str:
    found = os.environ.get("ROOMD_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise RuntimeError(
            "redis-server is not installed: run `make test` (it installs Debian's redis-server) "
            "or set ROOMD_TEST_REDIS_SERVER to a redis-server binary"
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; `restart` keeps its port and its data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port", str(self.port),
                "--bind", LOOPBACK,
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--protected-mode", "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.directory / 'redis.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_sentinel(directory: Path, primary: RedisServer, *, name: str = "mymaster") -> Iterator[int]:
    """A Redis Sentinel on loopback watching `primary` as `name`; yields its port."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "sentinel.conf"  # Sentinel rewrites its own file: it must be writable
    config.write_text(
        f"port {port}\nbind {LOOPBACK}\ndir {directory}\nsentinel monitor {name} {LOOPBACK} {primary.port} 1\n"
    )
    log = (directory / "sentinel.log").open("ab")
    process = subprocess.Popen([redis_binary(), str(config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((LOOPBACK, port), timeout=0.5) as probe:
                    probe.sendall(f"SENTINEL get-master-addr-by-name {name}\r\n".encode())
                    if str(primary.port).encode() in probe.recv(256):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"Sentinel did not start: {(directory / 'sentinel.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
