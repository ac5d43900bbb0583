"""The narrow interfaces a room sees of the actors around it."""

from __future__ import annotations

from typing import Protocol

from roomd.actors.messages import CloseReason, RoomSnapshot
from roomd.actors.replies import Refused


class RoomHost(Protocol):
    """The directory, as its rooms see it."""

    def room_changed(self, snapshot: RoomSnapshot) -> None:
        """The member list or room info changed (never called for heartbeats)."""

    def room_closed(self, room_id: str, reason: CloseReason) -> None:
        """The room has closed: forget it now, so later requests get 'no such room'."""


class ImPort(Protocol):
    """The IM actor, as rooms and directories see it."""

    async def create_group(self, group_id: str, name: str) -> Refused | None:
        """Create the room's IM group; a Refused when IM said no."""

    def notify_pusher_change(self, group_id: str) -> None:
        """Tell the group's clients to re-read get_pushers (queued, collapsed)."""

    def destroy_group(self, group_id: str) -> None:
        """Destroy the room's IM group (queued)."""
