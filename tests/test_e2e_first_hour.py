"""What a new user meets in the first hour: a busy port is one line, the start-up log says where it listens."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.server_process import failing_roomd, running_roomd


async def test_a_busy_port_is_one_line_and_status_2_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = await failing_roomd(tmp_path, args=("--port", str(port)))
    assert failed.returncode == 2
    assert failed.output == [f"roomd: cannot listen on 127.0.0.1:{port}: address in use"]
    assert not (tmp_path / "data" / "rooms.sqlite3").exists()  # nothing was opened, nothing restored


async def test_the_start_up_log_says_once_where_it_listens(tmp_path: Path) -> None:
    async with running_roomd(tmp_path) as server:
        pass
    assert len(server.lines_about("roomd listening on")) == 1
    assert not server.lines_about("hypercorn") and not server.lines_about("Running on")
    assert server.lines_about("development key")  # no IM key configured: the start says so
