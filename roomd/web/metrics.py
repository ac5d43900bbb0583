"""`/metrics` in the Prometheus text format.

Request counts and latencies are counted as requests finish; everything
about the actor tree (rooms, members and audiences by kind and state, closes and
departures by reason, IM calls and queue, mailbox depths) is read from the
actors at scrape time, so nothing on the hot path keeps extra state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from roomd.actors.router import RoomRouter
from roomd.logs.files import dropped_log_writes

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self, router: RoomRouter) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "roomd_requests", "HTTP requests by route and reply code", ["route", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "roomd_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.accept_errors = Counter(
            "roomd_accept_errors",
            "accept() failures for lack of file descriptors or kernel memory (retried every 0.1 s)",
            registry=self.registry,
        )
        self.registry.register(ActorCollector(router))
        self.registry.register(LogWritesCollector())
        self._children: dict[tuple[str, object], tuple[Any, Any]] = {}

    def observe(self, route: str, code: object, seconds: float) -> None:
        children = self._children.get((route, code))
        if children is None:  # labels() is a locked lookup; keep the children it gives
            children = (self.requests.labels(route, str(code)), self.latency.labels(route))
            self._children[(route, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ActorCollector(Collector):
    def __init__(self, router: RoomRouter) -> None:
        self._router = router

    def collect(self) -> Iterator[Metric]:
        rooms = GaugeMetricFamily("roomd_rooms", "Rooms by kind and state", labels=["kind", "state"])
        members = GaugeMetricFamily("roomd_members", "Members by kind", labels=["kind"])
        audiences = GaugeMetricFamily("roomd_audiences", "Audiences (viewers) by kind", labels=["kind"])
        closes = CounterMetricFamily("roomd_room_closes", "Rooms closed by kind and reason", labels=["kind", "reason"])
        departures = CounterMetricFamily(
            "roomd_member_departures",
            "Members gone by kind and reason (timeout = evicted)",
            labels=["kind", "reason"],
        )
        directory_depth = GaugeMetricFamily(
            "roomd_directory_mailbox_depth", "Messages queued for each directory", labels=["kind"]
        )
        room_depth_max = GaugeMetricFamily(
            "roomd_room_mailbox_depth_max", "Deepest room mailbox by kind", labels=["kind"]
        )
        room_depth_sum = GaugeMetricFamily(
            "roomd_room_mailbox_depth_sum", "Messages queued for all rooms of a kind", labels=["kind"]
        )
        stats = self._router.stats()
        for kind, counts in stats.kinds.items():
            rooms.add_metric([kind, "waiting"], counts.waiting_rooms)
            rooms.add_metric([kind, "active"], counts.active_rooms)
            members.add_metric([kind], counts.members)
            audiences.add_metric([kind], counts.audiences)
            for reason, count in counts.closes.items():
                closes.add_metric([kind, reason.value], count)
            for leave_reason, count in counts.departures.items():
                departures.add_metric([kind, leave_reason.value], count)
            directory_depth.add_metric([kind], counts.directory_mailbox_depth)
            room_depth_max.add_metric([kind], counts.room_mailbox_depth_max)
            room_depth_sum.add_metric([kind], counts.room_mailbox_depth_sum)
        im_calls = CounterMetricFamily("roomd_im_calls", "IM REST calls by api and outcome", labels=["api", "outcome"])
        for (api, outcome), count in sorted(stats.im_calls.items()):
            im_calls.add_metric([api, outcome], count)
        im_queue = GaugeMetricFamily("roomd_im_queue_depth", "IM calls queued or in flight")
        im_queue.add_metric([], stats.im_queue_depth)
        store_failures = CounterMetricFamily(
            "roomd_store_writes_failed", "Changes that could not be saved (and were undone, or retried)"
        )
        store_failures.add_metric([], stats.store_failed_writes)
        for name, value in sorted({**stats.cluster, **stats.webhooks}.items()):
            help_text, counter = CLUSTER_METRICS.get(name) or WEBHOOK_METRICS.get(name, (name, False))
            family = CounterMetricFamily if counter else GaugeMetricFamily
            metric = family(name, help_text)
            metric.add_metric([], value)
            yield metric
        yield from (
            rooms,
            members,
            audiences,
            closes,
            departures,
            directory_depth,
            room_depth_max,
            room_depth_sum,
            im_calls,
            im_queue,
            store_failures,
        )


# what cluster mode counts (RouterStats.cluster): name -> (help, counter?)
CLUSTER_METRICS = {
    "roomd_cluster_forwarded": ("Room requests sent on to the node that owns the room", True),
    "roomd_cluster_served_for_peers": ("Room requests other nodes sent here", True),
    "roomd_cluster_relayed_heartbeats": ("Heartbeats answered here and relayed to the room's owner", True),
    "roomd_cluster_moved_retries": ("Forwarded requests answered MOVED and sent again to the new owner", True),
    "roomd_cluster_link_round_trip_seconds": ("Mean round trip of calls to other nodes", False),
    "roomd_cluster_lease_renew_failures": ("Lease renewals Redis did not answer or refused", True),
    "roomd_cluster_leases_taken": ("Leases this process took (more than one: a lease was lost)", True),
    "roomd_cluster_takeovers": ("Rooms taken over from nodes whose lease ended", True),
    "roomd_cluster_fenced_writes": ("Writes Redis refused: the room had moved to another node", True),
    "roomd_cluster_rooms_owned": ("Rooms this node owns", False),
    "roomd_cluster_peers": ("Links this node has open to other nodes (made when a call first needs one)", False),
    "roomd_cluster_redis_up": ("1 while Redis answers, 0 while it does not", False),
}


WEBHOOK_METRICS = {
    "roomd_webhook_deliveries": ("Webhook events delivered (2xx), all receivers", True),
    "roomd_webhook_failed_attempts": ("Webhook deliveries that failed and were tried again", True),
    "roomd_webhook_dropped_late": ("Webhook events dropped after webhooks.retry_for of failures", True),
    "roomd_webhook_dropped_full": ("Webhook events dropped, the oldest, from a full outbox", True),
    "roomd_webhook_outbox_depth": ("Webhook events waiting for delivery, all receivers", False),
    "roomd_webhook_latency_p99_seconds": ("p99 seconds from an event to its delivery (last 10,000)", False),
}


class LogWritesCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "roomd_log_writes_dropped",
            "Log lines lost to a failing disk or console, or to a full sink queue (not raised, not retried)",
        )
        dropped.add_metric([], dropped_log_writes())
        yield dropped
