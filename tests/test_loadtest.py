"""roomd-load against a real server process: the short version of the 500-room run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.server_process import running_roomd

pytestmark = pytest.mark.slow


async def _roomd_load(base_url: str, report: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [
            sys.executable,
            "-m",
            "roomd.loadtest.cli",
            "--url",
            base_url,
            "--report",
            str(report),
            "--no-progress",
            *extra,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_twenty_rooms_with_churn_and_crashed_members(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    async with running_roomd(tmp_path, ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT="4") as server:
        result = await _roomd_load(
            server.base_url,
            report_file,
            "--rooms",
            "20",
            "--members",
            "4",
            "--duration",
            "15",
            "--heartbeat",
            "1",
            "--heartbeat-timeout",
            "4",
            "--tolerance",
            "1.5",
            "--churn",
            "2",
            "--rejoin-after",
            "0.5",
            "--crash-fraction",
            "0.2",
            "--ramp",
            "2",
            "--seed",
            "7",
        )
    assert result.returncode == 0, result.stdout.decode()[-3000:]
    report = json.loads(report_file.read_text())
    evictions = report["evictions"]
    assert evictions["crashed"] == 12 and evictions["evicted_in_time"] == 12
    assert evictions["wrong_evictions"] == 0 and evictions["passed"] is True
    assert report["transport_failures"] == 0 and report["churned"] > 5
    assert report["endpoints"]["pusher_heartbeat"]["codes"] == {
        "0": report["endpoints"]["pusher_heartbeat"]["requests"]
    }
    assert report["endpoints"]["create_room"]["codes"] == {"0": 20}
    assert "PASS" in result.stdout.decode() and "eviction checks" in result.stdout.decode()
    assert sum("reason=timeout" in line for line in server.output) == 12


async def test_token_mode(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    async with running_roomd(tmp_path, ROOMD_AUTH__MODE="token") as server:
        result = await _roomd_load(
            server.base_url,
            report_file,
            "--rooms",
            "4",
            "--members",
            "3",
            "--duration",
            "5",
            "--heartbeat",
            "1",
            "--ramp",
            "1",
            "--token",
        )
    assert result.returncode == 0, result.stdout.decode()[-3000:]
    report = json.loads(report_file.read_text())
    assert set(report["endpoints"]["pusher_heartbeat"]["codes"]) == {"0"}
    assert report["endpoints"]["create_room"]["codes"] == {"0": 4}


async def test_live_rooms_with_audiences_list_exactly_their_viewers(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    async with running_roomd(tmp_path) as server:
        result = await _roomd_load(
            server.base_url,
            report_file,
            *("--kind", "live_room", "--rooms", "4", "--members", "2", "--audiences", "5"),
            *("--duration", "4", "--heartbeat", "1", "--ramp", "0.5"),
        )
    report = json.loads(report_file.read_text())
    assert result.returncode == 0, result.stdout.decode()[-2000:]
    assert report["audiences"] == {"rooms_checked": 4, "rooms_exact": 4, "passed": True}
    assert report["endpoints"]["add_audience"]["codes"] == {"0": 20}
    assert report["endpoints"]["delete_audience"]["codes"] == {"0": 20}
    assert "audience lists exact" in result.stdout.decode()
