"""The room router: the one thing the HTTP side talks to about rooms.

`RoomRouter` is the seam: web depends on it and on the messages, never on
a directory or a room. `LocalRouter` routes to the directories of this
process; a cluster router can wrap it and forward to other nodes what
they own, carrying the same messages (codec.py). Every call carries the
caller's deadline (trio time), and every answer is a value: the reply the
message names, or a `Refused`.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from roomd.actors.directory import Directory
from roomd.actors.messages import AdminPage, Ask, CreateRoom, GetRoom, RoomSnapshot
from roomd.actors.ports import ChangeStore, ImPort
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.stats import RouterStats
from roomd.actors.webhooks import WebhookSender

R = TypeVar("R")
RECENT_CLOSES_SHOWN = 50


class RoomRouter(Protocol):
    """Rooms by kind and roomID, wherever they live."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The room kinds served, in configuration order."""

    @property
    def ready(self) -> str | None:
        """None when requests can be served; else why not (for /readyz)."""

    async def create_room(self, kind: str, request: CreateRoom, *, deadline: float) -> Ok[str] | Refused:
        """Create a room of `kind`; the answer (its roomID) comes by `deadline`."""

    async def call_room(self, kind: str, room_id: str, message: Ask[R], *, deadline: float) -> R | Refused:
        """Send `message` to the room and return its answer by `deadline` (no room: NO_ROOM)."""

    async def page(self, kind: str, index: int, count: int) -> list[RoomSnapshot] | Refused:
        """Rooms with members in creation order: skip `index`, at most `count` (Refused: not now)."""

    async def admin_rooms(self, kind: str, *, state: str | None, cursor: str, limit: int) -> AdminPage | Refused:
        """Rooms of `kind` in creation order from `cursor` ("" for the first), for the admin API."""

    async def send_notification(self, kind: str, room_id: str, content: str, *, deadline: float) -> Ok[None] | Refused:
        """Queue a system notification with `content` to the room's IM group (no room: NO_ROOM)."""

    def im_group_state(self, room_id: str) -> dict[str, object]:
        """What this process is doing with the room's IM group."""

    def recent_closes(self) -> list[tuple[float, str, str, str]]:
        """(unix time, kind, roomID, reason) of the rooms that closed here lately, newest last."""

    def stats(self) -> RouterStats:
        """Counts for /metrics."""

    async def describe(self, *, limit: int) -> list[dict[str, Any]]:
        """The actors behind the router for /debug/actors, at most `limit` rooms per kind."""

    async def drain(self) -> None:
        """The server is stopping: let other nodes, if any, take this one's rooms now."""


def unknown_kind(kind: str) -> Refused:
    return Refused(DomainError.NO_ROOM, f"there is no room kind {kind}")


def parse_cursor(cursor: str) -> int | None:
    """A listing cursor as this server gives them (a creation sequence number), -1 for ""."""
    if cursor == "":
        return -1
    return int(cursor) if cursor.isascii() and cursor.isdigit() and len(cursor) <= 18 else None


def notify_when_found(found: Ok[RoomSnapshot] | Refused, im: ImPort, room_id: str, content: str) -> Ok[None] | Refused:
    """Queue an operator's notification to a room that was found."""
    if isinstance(found, Refused):
        return found
    if not im.send_notification(room_id, content):
        return Refused(DomainError.BUSY, "the IM queue is full; retry later")
    return Ok(None)


class LocalRouter:
    """Every room in this process: one directory per kind."""

    def __init__(
        self,
        directories: dict[str, Directory],
        *,
        im: ImPort,
        store: ChangeStore,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self._directories = directories
        self._im = im
        self._store = store
        self._webhooks = webhooks

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._directories)

    @property
    def ready(self) -> str | None:
        return None

    @property
    def im(self) -> ImPort:
        return self._im

    def directory(self, kind: str) -> Directory | None:
        """The kind's directory: for tests and tools in this process, never for web."""
        return self._directories.get(kind)

    async def create_room(self, kind: str, request: CreateRoom, *, deadline: float) -> Ok[str] | Refused:
        directory = self._directories.get(kind)
        if directory is None:
            return unknown_kind(kind)
        return await directory.create_room(request, deadline=deadline)

    async def call_room(self, kind: str, room_id: str, message: Ask[R], *, deadline: float) -> R | Refused:
        directory = self._directories.get(kind)
        if directory is None:
            return unknown_kind(kind)
        return await directory.call_room(room_id, message, deadline=deadline)

    async def page(self, kind: str, index: int, count: int) -> list[RoomSnapshot] | Refused:
        directory = self._directories.get(kind)
        return directory.page(index, count) if directory is not None else []

    async def admin_rooms(self, kind: str, *, state: str | None, cursor: str, limit: int) -> AdminPage | Refused:
        directory = self._directories.get(kind)
        if directory is None:
            return unknown_kind(kind)
        after = parse_cursor(cursor)
        if after is None:
            return Refused(DomainError.INVALID, "cursor is not one this server gave")
        return directory.admin_page(after, limit, state=state)

    async def send_notification(self, kind: str, room_id: str, content: str, *, deadline: float) -> Ok[None] | Refused:
        found = await self.call_room(kind, room_id, GetRoom(), deadline=deadline)
        return notify_when_found(found, self._im, room_id, content)

    def im_group_state(self, room_id: str) -> dict[str, object]:
        return self._im.group_state(room_id)

    def recent_closes(self) -> list[tuple[float, str, str, str]]:
        closes = [
            (at, kind, room_id, reason)
            for kind, directory in self._directories.items()
            for at, room_id, reason in directory.recent_closes
        ]
        return sorted(closes)[-RECENT_CLOSES_SHOWN:]

    def stats(self) -> RouterStats:
        return RouterStats(
            kinds={kind: directory.stats() for kind, directory in self._directories.items()},
            im_calls={(api, outcome): count for (api, outcome), count in self._im.stats.outcomes.items()},
            im_queue_depth=self._im.queue_depth,
            store_failed_writes=self._store.failed_writes,
            webhooks=webhook_stats(self._webhooks) if self._webhooks is not None else {},
        )

    async def drain(self) -> None:
        return None  # one process: rooms stop (or are kept for the next start) when the system stops

    async def describe(self, *, limit: int) -> list[dict[str, Any]]:
        webhooks = [self._webhooks.describe()] if self._webhooks is not None else []
        return [self._im.describe(), *webhooks, *[await d.describe(limit=limit) for d in self._directories.values()]]


def webhook_stats(sender: WebhookSender) -> dict[str, float]:
    stats = sender.stats
    ordered = sorted(stats.latencies)
    return {
        "roomd_webhook_deliveries": float(stats.delivered),
        "roomd_webhook_failed_attempts": float(stats.failed_attempts),
        "roomd_webhook_dropped_late": float(stats.dropped_late),
        "roomd_webhook_dropped_full": float(stats.dropped_full),
        "roomd_webhook_outbox_depth": float(sender.outbox_depth),
        "roomd_webhook_latency_p99_seconds": ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0,
    }
