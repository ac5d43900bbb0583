"""Every command the README shows (in its code blocks, starting with make, roomd or redis-server) runs
as written: a server until it says it listens, the rest to their end or for a few seconds.

What a test cannot do as written it does as close as it can, and says so below: `make test` and
its kin are dry-run (`make -n`: a test suite cannot run itself), the ports the README names are
replaced by free ones (5757 and 6379 may be taken here), and redis-server runs in the foreground.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.redis_server import redis_binary

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def readme_commands() -> list[str]:
    """The commands in the README's code blocks (backslash continuations joined, comments cut)."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    found: list[str] = []
    fenced = False
    pending = ""
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
            continue
        indented = line.startswith("    ") and (not lines[number - 1].strip() or lines[number - 1].startswith("    "))
        if not (fenced or indented):
            continue
        text = pending + (line if fenced else line[4:]).strip()
        if text.endswith("\\"):
            pending = text[:-1]
            continue
        pending = ""
        text = re.sub(r"\s+#.*$", "", text).strip()
        core = re.sub(r"^(?:\$\s+)?(?:[A-Z_]+=\S+\s+)*", "", text)
        if re.match(r"(make\s|\.venv/bin/roomd|roomd\s|redis-server\s)", core):
            found.append(" ".join(text.split()))
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_env(**more: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ROOMD_")}, **more}


class Server:
    """A process whose stderr is read all along (a full pipe would stop it), in its own session."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def until_listening(self, count: int = 1, within: float = 120) -> None:
        deadline = time.monotonic() + within
        while sum("roomd listening on" in line for line in self.lines) < count:
            assert self.process.poll() is None and time.monotonic() < deadline, self.lines[-20:]
            time.sleep(0.05)

    def stop(self) -> int:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


def serve_until_listening(argv: list[str], env: dict[str, str], cwd: Path, count: int = 1) -> None:
    server = Server(argv, env, cwd)
    try:
        server.until_listening(count)
    finally:
        server.stop()


def make_serve(command: str, tmp: Path) -> None:
    env = clean_env(ROOMD_SERVER__PORT="0", ROOMD_SERVER__DATA_DIR=str(tmp / "data"), ROOMD_LOG__DIR=str(tmp / "logs"))
    serve_until_listening(command.split(), env, ROOT)


def make_dry_run(command: str, tmp: Path) -> None:
    result = subprocess.run(["make", "-n", command.split()[1]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def bad_port(command: str, tmp: Path) -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    shown = next(lines[i + 1].strip() for i, line in enumerate(lines) if line.strip() == command)
    name, value = command.split()[1].split("=", 1)
    argv = command.split()[2:]
    result = subprocess.run(
        [str(ROOT / argv[0]), *argv[1:]], cwd=tmp, env=clean_env(**{name: value}), capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.strip() == shown


def cluster_of_two(redis_command: str, roomd_command: str, tmp: Path) -> None:
    port = free_port()
    flags = redis_command.split()[1:]
    flags[flags.index("--port") + 1] = str(port)
    flags[flags.index("--daemonize") + 1] = "no"  # in the foreground, so that the test can stop it
    redis = Server([redis_binary(), *flags, "--dir", str(tmp)], clean_env(), tmp)
    try:
        time.sleep(0.5)
        url_setting, *argv = roomd_command.replace("6379", str(port)).split()
        name, value = url_setting.split("=", 1)
        env = clean_env(**{name: value, "ROOMD_SERVER__PORT": str(free_port())})
        serve_until_listening([str(ROOT / argv[0]), *argv[1:]], env, tmp, count=2)
    finally:
        redis.stop()


def load_run(command: str, tmp: Path) -> None:
    port = free_port()
    env = clean_env(
        ROOMD_SERVER__PORT=str(port),
        ROOMD_LIMITS__CREATE_RATE_PER_ADDRESS="0",
        ROOMD_LIMITS__CREATE_RATE_PER_USER="0",
        ROOMD_LIMITS__LOGIN_RATE_PER_ADDRESS="0",
        ROOMD_KINDS__MULTI_ROOM__MAX_ROOMS_PER_ADDRESS="0",
        ROOMD_KINDS__MULTI_ROOM__MAX_WAITING_ROOMS="0",
    )
    server = Server([str(ROOT / ".venv/bin/roomd"), "serve"], env, tmp)
    try:
        server.until_listening()
        argv = re.sub(r"http://127\.0\.0\.1:575[78]", f"http://127.0.0.1:{port}", command).split()
        load = Server([str(ROOT / argv[0]), *argv[1:], "--report", str(tmp / "report.json")], clean_env(), tmp)
        time.sleep(4)  # the README's runs last a minute: a few seconds show that they run
        still_running = load.process.poll() is None
        os.killpg(load.process.pid, signal.SIGINT)
        load.process.wait(timeout=30)
        assert still_running or load.process.returncode in (0, 1), "".join(load.lines[-30:])
        assert still_running or not any("Traceback" in line for line in load.lines), "".join(load.lines[-30:])
    finally:
        assert server.stop() == 0, "".join(server.lines[-20:])


COMMANDS = readme_commands()
REDIS = next((c for c in COMMANDS if c.startswith("redis-server")), "")
RUNNERS: dict[str, Callable[[str, Path], None]] = {
    "make serve": make_serve,
    "make test": make_dry_run,
    "make test-fast": make_dry_run,
    "make lint": make_dry_run,
    "make lock": make_dry_run,
    "$ ROOMD_SERVER__PORT=x .venv/bin/roomd serve": bad_port,
    REDIS: lambda command, tmp: None,  # run with the cluster command that needs it
    "ROOMD_CLUSTER__REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/roomd serve --workers 2": (
        lambda command, tmp: cluster_of_two(REDIS, command, tmp)
    ),
}


def test_every_command_of_the_readme_is_run_here() -> None:
    unknown = [c for c in COMMANDS if c not in RUNNERS and not c.startswith(".venv/bin/roomd-load")]
    assert unknown == [], f"README commands no test runs: {unknown}"
    assert len(COMMANDS) >= 9


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.split(" --")[0][:40])
def test_a_readme_command_runs_as_written(command: str, tmp_path: Path) -> None:
    runner = load_run if command.startswith(".venv/bin/roomd-load") else RUNNERS[command]
    runner(command, tmp_path)
