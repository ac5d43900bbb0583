"""`roomd-load --html report.html`: one self-contained HTML file to look at after a run.

Requests per second and p50/p99 latency per second of the run for every
endpoint, replies by code, the eviction lateness of crashed members, and
the run's settings. The charts are plotly's, with plotly.js written into
the file, so it opens anywhere with no network.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from roomd.loadtest.stats import LoadStats, percentile

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roomd-load report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; color: #1d2330; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: .2em .8em; border-bottom: 1px solid #e4e7ec; text-align: left; }}
section {{ margin: 2em 0; }}
</style></head>
<body>
<h1>roomd-load report</h1>
<p>{summary}</p>
{charts}
<section><h2>Settings</h2><table>{settings}</table></section>
</body></html>
"""


def _per_second(stats: LoadStats) -> dict[str, dict[int, list[float]]]:
    """Latencies by endpoint and second of the run."""
    buckets: dict[str, dict[int, list[float]]] = {}
    for endpoint, endpoint_stats in sorted(stats.endpoints.items()):
        by_second: dict[int, list[float]] = defaultdict(list)
        for at, seconds in zip(endpoint_stats.times, endpoint_stats.latencies, strict=True):
            by_second[int(at)].append(seconds)
        buckets[endpoint] = dict(sorted(by_second.items()))
    return buckets


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=420)
    return fig


def figures(stats: LoadStats) -> dict[str, go.Figure]:
    buckets = _per_second(stats)
    rate = go.Figure()
    latency = go.Figure()
    for endpoint, by_second in buckets.items():
        seconds = list(by_second)
        rate.add_trace(go.Scatter(x=seconds, y=[len(v) for v in by_second.values()], name=endpoint, mode="lines"))
        for name, fraction in (("p50", 0.5), ("p99", 0.99)):
            values = [percentile(sorted(v), fraction) * 1000 for v in by_second.values()]
            dash = "solid" if name == "p50" else "dot"
            latency.add_trace(
                go.Scatter(x=seconds, y=values, name=f"{endpoint} {name}", mode="lines", line={"dash": dash})
            )
    codes = go.Figure()
    all_codes = sorted({code for s in stats.endpoints.values() for code in s.codes})
    endpoints = sorted(stats.endpoints)
    for code in all_codes:
        counts = [stats.endpoints[e].codes.get(code, 0) for e in endpoints]
        codes.add_trace(go.Bar(x=endpoints, y=counts, name=f"code {code}"))
    codes.update_layout(barmode="stack")
    lateness = go.Figure(go.Histogram(x=[value * 1000 for value in stats.checks.lateness], nbinsx=30))
    return {
        "requests": _layout(rate, "Requests per second, by endpoint", "second of the run", "requests/s"),
        "latency": _layout(latency, "Latency per second: p50 (solid) and p99 (dotted)", "second of the run", "ms"),
        "codes": _layout(codes, "Replies by code", "endpoint", "replies"),
        "lateness": _layout(
            lateness,
            "Eviction lateness of crashed members (seen gone minus last heartbeat plus timeout)",
            "ms",
            "members",
        ),
    }


def write_html(path: Path, report: dict[str, Any], stats: LoadStats) -> None:
    charts = []
    for number, (name, figure) in enumerate(figures(stats).items()):
        chart = pio.to_html(figure, include_plotlyjs=number == 0, full_html=False, div_id=f"chart-{name}")
        charts.append(f"<section>{chart}</section>")
    settings_rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(json.dumps(value))}</td></tr>"
        for key, value in report["settings"].items()
    )
    summary = (
        f"{report['requests']} requests in {report['elapsed_s']:.1f} s "
        f"({report['requests_per_second']:.0f}/s) to {', '.join(report['nodes'])}; "
        f"eviction checks {'passed' if report['evictions']['passed'] else 'FAILED'}"
    )
    page = PAGE.format(summary=html.escape(summary), charts="\n".join(charts), settings=settings_rows)
    path.write_text(page, encoding="utf-8")
