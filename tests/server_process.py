"""A real `roomd serve` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

LISTENING = re.compile(r"roomd listening on (http://[^\s\"]+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
SERVE_COMMAND = [sys.executable, "-m", "roomd.cli", "serve", "--host", "127.0.0.1", "--port", "0"]


@dataclass
class ServerProcess:
    base_url: str
    process: trio.Process
    log_dir: Path
    output: list[str] = field(default_factory=list)

    def lines_about(self, needle: str) -> list[str]:
        return [line for line in self.output if needle in line]


@dataclass
class FailedStart:
    returncode: int
    output: list[str]
    seconds: float


def _environment(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMD_")}
    environment.update({"ROOMD_LOG__DIR": str(tmp_path / "logs"), **env})
    return environment


async def failing_roomd(
    tmp_path: Path, *, preexec_fn: Callable[[], None] | None = None, args: tuple[str, ...] = (), **env: str
) -> FailedStart:
    """Run `roomd serve --port 0` (plus `args`) that is expected to give up at start; its exit status and stderr."""
    started = time.monotonic()
    with trio.fail_after(START_TIMEOUT):
        result = await trio.run_process(
            [*SERVE_COMMAND, *args],
            stdout=subprocess.DEVNULL,
            capture_stderr=True,
            check=False,
            env=_environment(tmp_path, env),
            cwd=tmp_path,
            preexec_fn=preexec_fn,
        )
    output = result.stderr.decode("utf-8", errors="replace").splitlines()
    return FailedStart(result.returncode, output, time.monotonic() - started)


@asynccontextmanager
async def running_roomd(
    tmp_path: Path, *, preexec_fn: Callable[[], None] | None = None, args: tuple[str, ...] = (), **env: str
) -> AsyncIterator[ServerProcess]:
    """Start `roomd serve --port 0` (plus `args`), wait for its listening line, stop it with SIGTERM.

    `preexec_fn` runs in the child before roomd, e.g. to set a resource limit.
    """
    process = await trio.lowlevel.open_process(
        [*SERVE_COMMAND, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_environment(tmp_path, env),
        cwd=tmp_path,
        preexec_fn=preexec_fn,
    )
    assert process.stderr is not None
    output: list[str] = []
    listening = trio.Event()
    found: list[str] = []

    async def read_output() -> None:
        buffer = b""
        async for chunk in process.stderr:  # type: ignore[union-attr]
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", errors="replace")
                output.append(line)
                match = LISTENING.search(line)
                if match and not listening.is_set():
                    found.append(match.group(1))
                    listening.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_output)
        with trio.fail_after(START_TIMEOUT):
            await listening.wait()
        server = ServerProcess(found[0], process, tmp_path / "logs", output)
        try:
            yield server
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT):
                await process.wait()
