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
