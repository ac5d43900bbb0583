"""One well-behaved client's heartbeats, timed, for the tests that attack a real server beside it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Beat:
    sent: float
    answered: float

    @property
    def latency(self) -> float:
        return self.answered - self.sent


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def slow_tail(latencies: list[float], idle_p99: float) -> tuple[float, list[float]]:
    """The bound a heartbeat under attack may exceed only rarely (20 x its idle p99, at least
    0.25 s: a shared machine's own stalls stay under it), and the latencies past it."""
    limit = max(0.25, 20 * idle_p99)
    return limit, [latency for latency in latencies if latency > limit]
