"""Counts of rooms, members, audiences and mailboxes that /metrics shows: plain data, like every router reply."""

from __future__ import annotations

from dataclasses import dataclass, field

from roomd.actors.messages import CloseReason, LeaveReason


@dataclass(frozen=True, slots=True)
class KindStats:
    """One kind's rooms, members and audiences, for /metrics."""

    waiting_rooms: int
    active_rooms: int
    members: int
    closes: dict[CloseReason, int] = field(default_factory=dict)
    departures: dict[LeaveReason, int] = field(default_factory=dict)
    directory_mailbox_depth: int = 0
    room_mailbox_depth_max: int = 0
    room_mailbox_depth_sum: int = 0
    audiences: int = 0


@dataclass(frozen=True, slots=True)
class RouterStats:
    """What /metrics shows of the actors."""

    kinds: dict[str, KindStats]
    im_calls: dict[tuple[str, str], int]  # (api, outcome) -> count
    im_queue_depth: int
    store_failed_writes: int
    cluster: dict[str, float] = field(default_factory=dict)  # cluster mode's counters, by metric name
    webhooks: dict[str, float] = field(default_factory=dict)  # the webhook sender's, by metric name
