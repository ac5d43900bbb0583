"""What the load generator saw: latencies and reply codes per endpoint, requests per node URL,
and eviction checks."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FAILURE_CODES = frozenset({"transport", "malformed"})


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class EndpointStats:
    latencies: list[float] = field(default_factory=list)  # seconds
    times: list[float] = field(default_factory=list)  # when each was answered, seconds into the run
    codes: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self, elapsed: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "requests": len(ordered),
            "per_second": len(ordered) / elapsed if elapsed > 0 else 0.0,
            "p50_ms": percentile(ordered, 0.50) * 1000,
            "p90_ms": percentile(ordered, 0.90) * 1000,
            "p99_ms": percentile(ordered, 0.99) * 1000,
            "max_ms": (ordered[-1] if ordered else 0.0) * 1000,
            "codes": dict(sorted(self.codes.items())),
        }


@dataclass
class NodeStats:
    """What one node URL was asked: its share of the load."""

    codes: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.codes.total(),
            "errors": sum(n for code, n in self.codes.items() if code != "0"),
            "codes": dict(sorted(self.codes.items())),
        }


@dataclass
class EvictionChecks:
    """Crashed members must go within heartbeat_timeout + tolerance; live ones must never go."""

    crashed: int = 0
    evicted_in_time: int = 0
    evicted_late: list[float] = field(default_factory=list)  # seconds past the allowed time
    never_evicted: int = 0
    lateness: list[float] = field(default_factory=list)  # seen gone - (last heartbeat + timeout)
    wrong_evictions: list[str] = field(default_factory=list)  # "user in room: what the server said"

    @property
    def passed(self) -> bool:
        return not self.wrong_evictions and not self.evicted_late and self.never_evicted == 0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.lateness)
        return {
            "crashed": self.crashed,
            "evicted_in_time": self.evicted_in_time,
            "evicted_late": len(self.evicted_late),
            "never_evicted": self.never_evicted,
            "wrong_evictions": len(self.wrong_evictions),
            "wrong_eviction_examples": self.wrong_evictions[:10],
            "lateness_p50_ms": percentile(ordered, 0.5) * 1000,
            "lateness_max_ms": (ordered[-1] if ordered else 0.0) * 1000,
            "passed": self.passed,
        }


@dataclass
class LoadStats:
    endpoints: dict[str, EndpointStats] = field(default_factory=lambda: collections.defaultdict(EndpointStats))
    nodes: dict[str, NodeStats] = field(default_factory=dict)  # by base URL, in the order they were given
    checks: EvictionChecks = field(default_factory=EvictionChecks)
    members_active: int = 0
    churned: int = 0
    transport_errors: list[str] = field(default_factory=list)
    audience_checks: list[bool] = field(default_factory=list)  # per room: get_audiences listed exactly its viewers
    clock_zero: float = 0.0  # trio time the run began: `at` in records counts from it

    def add_nodes(self, urls: Iterable[str]) -> None:
        """Name every node in the report, even one that gets no request."""
        for url in urls:
            self.nodes.setdefault(url, NodeStats())

    def record(self, endpoint: str, node: str, seconds: float, code: str, *, at: float = 0.0) -> None:
        """A reply (`code`) from `node` after `seconds`, `at` seconds into the run."""
        stats = self.endpoints[endpoint]
        stats.latencies.append(seconds)
        stats.times.append(at)
        stats.codes[code] += 1
        self.nodes.setdefault(node, NodeStats()).codes[code] += 1

    @property
    def requests(self) -> int:
        return sum(len(s.latencies) for s in self.endpoints.values())

    @property
    def failures(self) -> int:
        """Requests without a usable reply: no HTTP answer, a body that is not a JSON object, or a
        success missing what the driver goes on from ("malformed")."""
        return sum(n for s in self.endpoints.values() for code, n in s.codes.items() if code in FAILURE_CODES)

    def report(self, elapsed: float, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            "settings": settings,
            "elapsed_s": elapsed,
            "requests": self.requests,
            "requests_per_second": self.requests / elapsed if elapsed > 0 else 0.0,
            "transport_failures": self.failures,
            "transport_failure_examples": self.transport_errors[:10],
            "churned": self.churned,
            "endpoints": {name: s.summary(elapsed) for name, s in sorted(self.endpoints.items())},
            "nodes": {url: s.summary() for url, s in self.nodes.items()},
            "evictions": self.checks.summary(),
            "audiences": {
                "rooms_checked": len(self.audience_checks),
                "rooms_exact": sum(self.audience_checks),
                "passed": all(self.audience_checks),
            },
        }
