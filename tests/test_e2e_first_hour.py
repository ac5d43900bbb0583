"""What a new user meets in the first hour: a busy port is one line, the start-up log says where it listens."""

from __future__ import annotations

import socket
import subprocess
import sys
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


def test_a_test_run_leaves_nothing_in_the_temporary_directory(tmp_path: Path) -> None:
    """The in-process servers' shared data_dir (under the temp dir, named by pid) goes with the run."""
    probe = Path(__file__).parent / "test_zz_leaves_data_dir_probe.py"
    probe.write_text(
        "from pathlib import Path\n"
        "from tests.conftest import TEST_ENV\n"
        "def test_writes() -> None:\n"
        "    data = Path(TEST_ENV['ROOMD_SERVER__DATA_DIR'])\n"
        "    data.mkdir(parents=True, exist_ok=True)\n"
        "    (data / 'token_secret').write_text('x')\n"
        "    print('DATA_DIR', data)\n"
    )
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", str(probe)],
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        probe.unlink()
    assert run.returncode == 0, run.stdout[-2000:]
    data_dir = Path(next(line.split(" ", 1)[1] for line in run.stdout.splitlines() if line.startswith("DATA_DIR")))
    assert not data_dir.exists()
