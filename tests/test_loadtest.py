"""roomd-load against real server processes (one, or two nodes of a cluster given as
several --url): the short version of the 500-room run; and what it makes of its arguments."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from roomd.loadtest.cli import main
from roomd.loadtest.driver import LoadSettings, Session, plan_members, pool_sizes
from roomd.loadtest.http import HttpPool
from roomd.loadtest.stats import LoadStats
from tests.browser import artifacts, headless_chromium
from tests.loopback_http import FakeReply, FakeRequest, serve_loopback
from tests.redis_server import RedisServer
from tests.server_process import ServerProcess, running_roomd


async def _roomd_load(base_urls: Sequence[str], report: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    urls = [arg for url in base_urls for arg in ("--url", url)]
    return await trio.run_process(
        [
            sys.executable,
            "-m",
            "roomd.loadtest.cli",
            *urls,
            "--report",
            str(report),
            "--no-progress",
            *extra,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


@pytest.mark.slow
async def test_twenty_rooms_with_churn_and_crashed_members(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    html_file = tmp_path / "report.html"
    async with running_roomd(tmp_path, ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT="4") as server:
        result = await _roomd_load(
            [server.base_url],
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
            "--html",
            str(html_file),
        )
    assert result.returncode == 0, result.stdout.decode()[-3000:]
    await charts_have_points(html_file, tmp_path / "profile")
    report = json.loads(report_file.read_text())
    evictions = report["evictions"]
    assert evictions["crashed"] == 12 and evictions["evicted_in_time"] == 12
    assert evictions["wrong_evictions"] == 0 and evictions["passed"] is True
    assert report["transport_failures"] == 0 and report["churned"] > 5
    assert report["endpoints"]["pusher_heartbeat"]["codes"] == {
        "0": report["endpoints"]["pusher_heartbeat"]["requests"]
    }
    assert report["endpoints"]["create_room"]["codes"] == {"0": 20}
    out = result.stdout.decode()
    assert "PASS" in out and "eviction checks" in out
    assert "get_im_login_info" in out and "pusher_heartbeat" in out  # a pipe, not a terminal: nothing cut short
    assert f"report written to {report_file.resolve()} and {html_file.resolve()}" in " ".join(out.split())
    churn = report["churn_per_second"]
    assert churn["asked"] == 2 and churn["achieved"] > 0 and f"{churn['achieved']:.2f}/s achieved" in out
    assert sum("reason=timeout" in line for line in server.output) == 12


CHART_POINTS = """
return Array.from(document.querySelectorAll('.plotly-graph-div')).map(chart => [
  chart.id,
  (chart.data || []).reduce((n, trace) => n + Math.max((trace.x || []).length, (trace.y || []).length), 0),
  chart.querySelectorAll('.main-svg').length,
]);
"""
CHARTS = ["chart-requests", "chart-latency", "chart-codes", "chart-lateness"]


async def charts_have_points(report: Path, profile: Path) -> None:
    """Open the HTML report in headless Chromium (a file: no network) and count each chart's points."""
    text = await trio.Path(report).read_text()
    assert not re.search(r"<script[^>]*\bsrc=", text)  # plotly.js is in the file: nothing is fetched
    with headless_chromium(profile) as browser:
        driver: Any = browser
        await trio.to_thread.run_sync(driver.get, report.as_uri())
        charts: list[Any] = []
        with trio.move_on_after(30):  # a 5 MB page on a busy machine: its charts come when they come
            while not (len(charts) == len(CHARTS) and all(points and drawn for _, points, drawn in charts)):
                await trio.sleep(0.2)
                charts = await trio.to_thread.run_sync(driver.execute_script, CHART_POINTS)
        (artifacts() / "roomd-load-report.png").write_bytes(driver.get_screenshot_as_png())
    assert [chart_id for chart_id, _, _ in charts] == CHARTS
    for chart_id, points, drawn in charts:
        assert points > 0 and drawn > 0, chart_id


@pytest.mark.slow
async def test_token_mode(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    async with running_roomd(tmp_path, ROOMD_AUTH__MODE="token") as server:
        result = await _roomd_load(
            [server.base_url],
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


@pytest.mark.slow
async def test_live_rooms_with_audiences_list_exactly_their_viewers(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    async with running_roomd(tmp_path) as server:
        result = await _roomd_load(
            [server.base_url],
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


@asynccontextmanager
async def _cluster_node(tmp_path: Path, name: str, redis: RedisServer) -> AsyncIterator[ServerProcess]:
    directory = tmp_path / name
    directory.mkdir()
    async with running_roomd(directory, ROOMD_CLUSTER__REDIS_URL=redis.url, ROOMD_CLUSTER__NODE_NAME=name) as server:
        yield server


@pytest.mark.slow
async def test_two_urls_spread_the_clients_over_two_cluster_nodes(tmp_path: Path, redis: RedisServer) -> None:
    report_file = tmp_path / "report.json"
    async with _cluster_node(tmp_path, "a", redis) as a, _cluster_node(tmp_path, "b", redis) as b:
        urls = [a.base_url.rstrip("/"), b.base_url.rstrip("/")]
        result = await _roomd_load(
            urls,
            report_file,
            *("--rooms", "4", "--members", "3", "--duration", "5", "--heartbeat", "1", "--ramp", "1"),
        )
    output = result.stdout.decode()
    assert result.returncode == 0, output[-3000:]
    report = json.loads(report_file.read_text())
    nodes = report["nodes"]
    assert list(nodes) == urls and report["settings"]["base_urls"] == urls
    assert all(node["requests"] > 0 and node["errors"] == 0 for node in nodes.values())
    assert sum(node["requests"] for node in nodes.values()) == report["requests"]
    # each room's members alternate between the nodes, so every join but the creator's crosses to the other one
    assert report["endpoints"]["create_room"]["codes"] == {"0": 4}
    assert report["endpoints"]["add_pusher"]["codes"] == {"0": 8}
    assert "by node" in output and all(url in output for url in urls)


def test_members_of_a_room_are_bound_to_the_nodes_in_turn() -> None:
    urls = ("http://127.0.0.1:5757", "http://127.0.0.1:5758")
    settings = LoadSettings(base_urls=urls, rooms=2, members=3)
    stats = LoadStats()
    sessions = [Session(settings, url, HttpPool(url, size=1, timeout=1.0), stats) for url in urls]
    members = plan_members(sessions, settings, start=0.0)
    assert [m.session.url for m in members] == [urls[0], urls[1], urls[0], urls[1], urls[0], urls[1]]


def test_the_connection_budget_is_split_over_the_urls_with_at_least_one_each() -> None:
    assert pool_sizes(32, 1) == [32]
    assert pool_sizes(32, 3) == [11, 11, 10]
    assert pool_sizes(2, 3) == [1, 1, 1]


@pytest.mark.parametrize(
    "bad",
    ["127.0.0.1:5757", "ftp://127.0.0.1:5757", "http://", "http://127.0.0.1:port", "http://127.0.0.1:0"],
)
def test_a_url_that_is_not_http_is_refused_with_status_2(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--url", "http://127.0.0.1:5757", "--url", bad, "--duration", "0", "--report", str(tmp_path / "r.json")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("roomd-load: error: argument --url:") and repr(bad) in error


def test_url_is_required_and_its_help_says_it_may_be_repeated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--duration", "0", "--report", str(tmp_path / "r.json")])
    assert exit_.value.code == 2 and "--url" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "repeat it" in " ".join(capsys.readouterr().out.split())


def test_crashes_that_the_run_is_too_short_to_see_are_refused_not_passed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["--url", "http://127.0.0.1:5757", "--crash-fraction", "0.1", "--duration", "20"])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--crash-fraction needs --duration of more than 38 s" in error and "got 20" in error


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())  # the help wraps its lines
    for option, default in (("--churn", "0.0"), ("--heartbeat", "5.0"), ("--rooms", "10")):
        assert option in shown and f"(default: {default})" in shown, option


@pytest.mark.parametrize(
    "answer",
    [
        FakeReply(200, {"code": 0}),  # a success without the fields the driver goes on from
        FakeReply(200, {}, text=b"[" * 100_000 + b"]" * 100_000),  # deeper than JSON can be read, not an object
    ],
    ids=["code-0-alone", "nested"],
)
async def test_a_server_answering_oddly_is_reported_and_fails_the_run_without_a_crash(
    tmp_path: Path, answer: FakeReply
) -> None:
    async def odd(request: FakeRequest) -> FakeReply | None:
        return answer

    report_file = tmp_path / "report.json"
    async with trio.open_nursery() as nursery:
        server = await serve_loopback(nursery, odd)
        result = await _roomd_load(
            [server.base_url], report_file, "--rooms", "2", "--members", "2", "--duration", "1", "--ramp", "0.5"
        )
        nursery.cancel_scope.cancel()
    output = (result.stdout + result.stderr).decode()
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == 1, output[-3000:]
    report = json.loads(report_file.read_text())
    assert report["transport_failure_examples"], report
