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
from roomd.actors.messages import Ask, CreateRoom, RoomSnapshot
from roomd.actors.ports import ChangeStore, ImPort
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.stats import RouterStats

R = TypeVar("R")


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

    def stats(self) -> RouterStats:
        """Counts for /metrics."""

    async def describe(self, *, limit: int) -> list[dict[str, Any]]:
        """The actors behind the router for /debug/actors, at most `limit` rooms per kind."""

    async def drain(self) -> None:
        """The server is stopping: let other nodes, if any, take this one's rooms now."""


def unknown_kind(kind: str) -> Refused:
    return Refused(DomainError.NO_ROOM, f"there is no room kind {kind}")


class LocalRouter:
    """Every room in this process: one directory per kind."""

    def __init__(self, directories: dict[str, Directory], *, im: ImPort, store: ChangeStore) -> None:
        self._directories = directories
        self._im = im
        self._store = store

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._directories)

    @property
    def ready(self) -> str | None:
        return None

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

    def stats(self) -> RouterStats:
        return RouterStats(
            kinds={kind: directory.stats() for kind, directory in self._directories.items()},
            im_calls={(api, outcome): count for (api, outcome), count in self._im.stats.outcomes.items()},
            im_queue_depth=self._im.queue_depth,
            store_failed_writes=self._store.failed_writes,
        )

    async def drain(self) -> None:
        return None  # one process: rooms stop (or are kept for the next start) when the system stops

    async def describe(self, *, limit: int) -> list[dict[str, Any]]:
        return [self._im.describe(), *[await d.describe(limit=limit) for d in self._directories.values()]]
