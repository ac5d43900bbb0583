"""`roomd-load`: run the load, show live progress, print a summary and write a JSON report.

    roomd-load --url http://127.0.0.1:5757 --rooms 500 --members 4 --duration 60 \\
               --churn 5 --crash-fraction 0.05

`--url` may be repeated, one per node of a cluster: the simulated clients are
bound to the URLs in turn, and the summary counts the requests each got.

Exit status 0 when every check passed (no wrong eviction, every crashed
member evicted in time, no transport failure), 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from roomd.loadtest.driver import LoadSettings, run_load, shortest_run_with_crashes
from roomd.loadtest.stats import LoadStats

PROGRESS_EVERY = 0.5


def base_url(text: str) -> str:
    """An --url value: an http:// or https:// URL with a host, without a trailing slash."""
    try:
        url = urlsplit(text)
        valid = url.scheme in ("http", "https") and bool(url.hostname) and url.port != 0
    except ValueError:  # e.g. a port that is not a number
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(f"not an http:// or https:// URL with a host: {text!r}")
    return text.rstrip("/")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="roomd-load",
        description="Drive many rooms of simulated RTCRoom clients.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # every default in --help
    )
    p.add_argument(
        "--url",
        action="append",
        required=True,
        type=base_url,
        help="roomd's base URL, e.g. http://127.0.0.1:5757; repeat it for several nodes of a cluster "
        "(the clients are spread over them in turn, so the members of a room talk to different nodes)",
    )
    p.add_argument("--prefix", default="/weapp", help="route prefix (server.route_prefix)")
    p.add_argument("--kind", default="multi_room", help="room kind")
    p.add_argument("--rooms", type=int, default=10, help="rooms to make and fill")
    p.add_argument("--members", type=int, default=4, help="members per room, creator included")
    p.add_argument("--duration", type=float, default=60.0, help="seconds; the run stops by itself")
    p.add_argument("--heartbeat", type=float, default=5.0, help="seconds between a member's heartbeats")
    p.add_argument("--jitter", type=float, default=0.2, help="heartbeat jitter, a fraction of --heartbeat")
    p.add_argument("--heartbeat-timeout", type=float, default=20.0, help="the server's heartbeat_timeout")
    p.add_argument("--tolerance", type=float, default=2.0, help="seconds a crashed member may outlive its deadline")
    p.add_argument("--churn", type=float, default=0.0, help="leave-and-rejoin events per second")
    p.add_argument("--rejoin-after", type=float, default=2.0, help="seconds a churning member stays out")
    p.add_argument("--crash-fraction", type=float, default=0.0, help="share of members that stop heartbeating")
    p.add_argument("--token", action="store_true", help="the server runs auth.mode = token")
    p.add_argument("--audiences", type=int, default=0, help="viewers per room (the kind must allow audiences)")
    p.add_argument("--connections", type=int, default=32, help="kept-alive HTTP connections")
    p.add_argument("--ramp", type=float, default=5.0, help="seconds over which rooms are started")
    p.add_argument("--seed", type=int, help="random seed, for a run that can be repeated")
    p.add_argument("--report", default="roomd-load-report.json", help="where the JSON report goes")
    p.add_argument("--html", help="also write the report as one self-contained HTML file with charts here")
    p.add_argument("--no-progress", action="store_true", help="no live display (the default when not a terminal)")
    return p


def _progress(stats: LoadStats, settings: LoadSettings, elapsed: float, rate: float) -> Table:
    checks = stats.checks
    table = Table(title=f"roomd-load -> {', '.join(settings.base_urls)}", show_header=False)
    table.add_row("elapsed", f"{elapsed:5.1f} / {settings.duration:g} s")
    table.add_row("members active", str(stats.members_active))
    table.add_row("requests", f"{stats.requests}  ({rate:.0f}/s)")
    table.add_row("transport failures", str(stats.failures))
    table.add_row("churned", str(stats.churned))
    table.add_row("crashed members evicted in time", f"{checks.evicted_in_time} / {checks.crashed}")
    table.add_row("wrong evictions", str(len(checks.wrong_evictions)))
    return table


def _summary(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"{', '.join(report['nodes'])}: {report['requests']} requests in {report['elapsed_s']:.1f} s "
        f"({report['requests_per_second']:.0f}/s)"
    )
    for column in ("endpoint", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "replies by code"):
        table.add_column(column, justify="left" if column in ("endpoint", "replies by code") else "right")
    for name, s in report["endpoints"].items():
        codes = ", ".join(f"{code}: {n}" for code, n in s["codes"].items())
        table.add_row(
            name,
            f"{s['per_second']:.1f}",
            f"{s['p50_ms']:.1f}",
            f"{s['p90_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            f"{s['max_ms']:.1f}",
            codes,
        )
    return table


def _by_node(report: dict[str, Any]) -> Table:
    table = Table(title="by node")
    table.add_column("URL")
    table.add_column("requests", justify="right")
    table.add_column("errors", justify="right")
    for url, node in report["nodes"].items():
        table.add_row(url, str(node["requests"]), str(node["errors"]))
    return table


def _checks(report: dict[str, Any]) -> Table:
    e = report["evictions"]
    table = Table(title="eviction checks", show_header=False)
    table.add_row("crashed members", str(e["crashed"]))
    table.add_row("evicted in time", str(e["evicted_in_time"]))
    table.add_row("evicted late", str(e["evicted_late"]))
    table.add_row("never evicted", str(e["never_evicted"]))
    table.add_row("lateness p50 / max", f"{e['lateness_p50_ms']:.0f} / {e['lateness_max_ms']:.0f} ms")
    table.add_row("wrong evictions", str(e["wrong_evictions"]))
    table.add_row("transport failures", str(report["transport_failures"]))
    a = report["audiences"]
    if a["rooms_checked"]:
        table.add_row("audience lists exact", f"{a['rooms_exact']} of {a['rooms_checked']} rooms")
    verdict = "PASS" if e["passed"] and a["passed"] and report["transport_failures"] == 0 else "FAIL"
    table.add_row("verdict", verdict)
    return table


async def _main(settings: LoadSettings, console: Console, live_display: bool) -> tuple[LoadStats, float]:
    stats = LoadStats()
    elapsed = 0.0
    async with trio.open_nursery() as nursery:
        started = trio.Event()

        async def drive() -> None:
            nonlocal elapsed
            elapsed = await run_load(settings, stats, started=started)
            nursery.cancel_scope.cancel()

        nursery.start_soon(drive)
        if live_display:
            await started.wait()
            begin, last_requests, last_at = trio.current_time(), 0, trio.current_time()
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                while True:
                    await trio.sleep(PROGRESS_EVERY)
                    now = trio.current_time()
                    rate = (stats.requests - last_requests) / (now - last_at)
                    last_requests, last_at = stats.requests, now
                    live.update(_progress(stats, settings, now - begin, rate))
    return stats, elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    fields = {f.name for f in dataclasses.fields(LoadSettings)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    settings = LoadSettings(base_urls=tuple(args.url), **values)
    shortest = shortest_run_with_crashes(settings)
    if settings.crash_fraction > 0 and settings.duration <= shortest:
        parser.error(
            f"--crash-fraction needs --duration of more than {shortest:g} s to see crashed members evicted "
            f"(ramp + heartbeat + heartbeat-timeout + 3 x tolerance + 2); got {settings.duration:g}"
        )
    console = Console() if sys.stdout.isatty() else Console(width=200)  # a file or pipe: nothing cut short
    live_display = console.is_terminal and not args.no_progress
    stats, elapsed = trio.run(_main, settings, console, live_display)
    report = stats.report(elapsed, {**dataclasses.asdict(settings)})
    report["churn_per_second"] = {"asked": settings.churn, "achieved": stats.churned / elapsed if elapsed else 0.0}
    report_path = Path(args.report).resolve()
    report_path.write_text(json.dumps(report, indent=2))
    if args.html:
        from roomd.loadtest.html_report import write_html  # plotly loads only when asked for

        write_html(Path(args.html), report, stats)
    console.print(_summary(report))
    console.print(_by_node(report))
    console.print(_checks(report))
    if settings.churn:
        achieved = report["churn_per_second"]["achieved"]
        console.print(
            f"churn: {achieved:.2f}/s achieved, {settings.churn:g}/s asked (a member churns at its next beat)"
        )
    html_path = f" and {Path(args.html).resolve()}" if args.html else ""
    console.print(f"report written to {report_path}{html_path}")
    passed = report["evictions"]["passed"] and report["audiences"]["passed"] and report["transport_failures"] == 0
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
