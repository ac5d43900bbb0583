"""A real server process out of file descriptors: accept() failures are logged at most once a
second and counted, and reach the error log file too (its file was opened at start, it needs no
descriptor now); connections already open keep being served, and once descriptors are free again
new connections are accepted."""

from __future__ import annotations

import re
import resource
import signal
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
import trio

from tests.bodies import member_fields
from tests.raw_http import address, open_fds
from tests.server_process import running_roomd

pytestmark = pytest.mark.slow

SPARE_FDS = 20
EXTRA_CONNECTIONS = 60
FAILURE_LINE = "cannot accept connections"


async def test_running_out_of_descriptors_is_logged_once_a_second_and_survived(tmp_path: Path) -> None:
    async with running_roomd(tmp_path, ROOMD_SERVER__KEEP_ALIVE_TIMEOUT="60") as server:
        pid = server.process.pid
        async with httpx.AsyncClient(
            base_url=server.base_url, timeout=5, limits=httpx.Limits(max_connections=1)
        ) as kept:
            room = (
                await kept.post("/weapp/multi_room/create_room", json={**member_fields("alice"), "roomName": "r"})
            ).json()["roomID"]
            assert (await kept.get("/metrics")).status_code == 200  # as served before: its lazy imports are done
            _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + SPARE_FDS, hard))

            extra = [await trio.open_tcp_stream(*address(server.base_url)) for _ in range(EXTRA_CONNECTIONS)]
            exhausted_at = trio.current_time()
            heartbeats = []
            for _ in range(4):  # the connection it already has is still served
                await trio.sleep(1)
                heartbeats.append(
                    (
                        await kept.post("/weapp/multi_room/pusher_heartbeat", json={"roomID": room, "userID": "alice"})
                    ).json()["code"]
                )
            metrics = (await kept.get("/metrics")).text
            exhausted_for = trio.current_time() - exhausted_at

            for stream in extra:
                await stream.aclose()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
        with trio.fail_after(5):  # a new connection is accepted and served again
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as fresh:
                assert (await fresh.get("/healthz")).status_code == 200

    assert heartbeats == [0, 0, 0, 0]
    failures = float(re.search(r"^roomd_accept_errors_total (\S+)$", metrics, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert failures >= 10  # about ten attempts a second
    lines = server.lines_about(FAILURE_LINE)
    assert 1 <= len(lines) <= exhausted_for + 2, lines
    times = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f") for line in lines]
    assert all((later - earlier).total_seconds() >= 0.99 for earlier, later in pairwise(times)), lines
    assert "EMFILE" in lines[0] and "more failures since the last line" in lines[-1]
    assert not server.lines_about("Traceback") and not server.lines_about("accept returned")
    error_files = sorted((server.log_dir / "error").glob("error-*.log"))
    in_error_files = [line for path in error_files for line in path.read_text().splitlines() if FAILURE_LINE in line]
    assert in_error_files == lines  # none dropped for want of a descriptor to open the file with


async def test_connections_made_while_the_server_is_stalled_wait_in_the_listen_backlog(tmp_path: Path) -> None:
    """A burst of 400 connections while roomd cannot accept (stopped, as in a long pause): the
    kernel queues them (server.listen_backlog, 2,048), and each is served once roomd runs again."""
    count = 400
    env = {"ROOMD_SERVER__MAX_CONNECTIONS_PER_ADDRESS": "0", "ROOMD_SERVER__KEEP_ALIVE_TIMEOUT": "30"}
    async with running_roomd(tmp_path, **env) as server:
        host, port = address(server.base_url)
        streams: list[trio.SocketStream] = []
        server.process.send_signal(signal.SIGSTOP)
        try:
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:

                    async def connect() -> None:
                        stream = await trio.open_tcp_stream(host, port)
                        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        streams.append(stream)

                    for _ in range(count):
                        nursery.start_soon(connect)
        finally:
            server.process.send_signal(signal.SIGCONT)
        statuses = []
        with trio.fail_after(20):
            for stream in streams:
                async with stream:
                    reply = b""
                    while chunk := await stream.receive_some(65536):
                        reply += chunk
                    statuses.append(reply.split(b" ", 2)[1] if reply else b"reset")
        assert statuses == [b"200"] * count
