"""The narrow interfaces a room sees of the actors around it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from roomd.actors.messages import CloseReason, LeaveReason, RoomSnapshot
from roomd.actors.replies import Refused

if TYPE_CHECKING:
    from roomd.actors.im import ImStats
    from roomd.actors.store import Change, SavedRoom, WriteFailed


class ChangeStore(Protocol):
    """Where rooms record their changes, as rooms and directories see it."""

    persistent: bool

    @property
    def accepting(self) -> bool:
        """False while the store is too far behind to take a request's changes."""

    async def write(self, changes: list[Change]) -> WriteFailed | None:
        """Make `changes` durable (in submission order); None once they are, else why not."""

    def write_later(self, changes: list[Change], *, about: str) -> None:
        """Write `changes` in submission order without waiting; failures are logged and counted."""

    def load(self, kind: str) -> list[SavedRoom]:
        """The open rooms of `kind` and their members, in creation order."""


class RoomHost(Protocol):
    """The directory, as its rooms see it."""

    def room_changed(self, snapshot: RoomSnapshot) -> None:
        """The member list or room info changed (never called for heartbeats)."""

    def member_left(self, reason: LeaveReason) -> None:
        """A member left the room, for the departure counts."""

    def room_closed(self, room_id: str, reason: CloseReason) -> None:
        """The room has closed: forget it now, so later requests get 'no such room'."""


class ImPort(Protocol):
    """The IM actor, as rooms, directories and the operations routes see it."""

    stats: ImStats
    queue_depth: int

    def describe(self) -> dict[str, object]:
        """The actor for /debug/actors."""

    async def create_group(self, group_id: str, name: str) -> Refused | None:
        """Create the room's IM group; a Refused when IM said no."""

    def notify_pusher_change(self, group_id: str) -> None:
        """Tell the group's clients to re-read get_pushers (queued, collapsed)."""

    def destroy_group(self, group_id: str) -> None:
        """Destroy the room's IM group (queued)."""
