"""The narrow interfaces rooms and directories see of the store and of the IM actor."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from roomd.actors.messages import Change
from roomd.actors.replies import Refused

if TYPE_CHECKING:
    from roomd.actors.im import ImStats
    from roomd.actors.store import SavedRoom, WriteFailed


class ChangeStore(Protocol):
    """Where rooms record their changes, as rooms and directories see it."""

    persistent: bool
    failed_writes: int

    @property
    def accepting(self) -> bool:
        """False while the store is too far behind to take a request's changes."""

    async def write(self, changes: list[Change], *, deadline: float = math.inf) -> WriteFailed | None:
        """Make `changes` durable (in submission order); None once they are, else why not.
        Changes still queued at `deadline` (trio time) are not written."""

    def write_later(self, changes: list[Change], *, about: str) -> None:
        """Write `changes` in submission order without waiting; failures are logged and counted."""

    def load(self, kind: str) -> list[SavedRoom]:
        """The open rooms of `kind` and their members, in creation order."""


class ImPort(Protocol):
    """The IM actor, as rooms, directories and the operations routes see it."""

    stats: ImStats
    queue_depth: int

    def describe(self) -> dict[str, object]:
        """The actor for /debug/actors."""

    async def create_group(self, group_id: str, name: str, *, deadline: float = math.inf) -> Refused | None:
        """Create the room's IM group, answering by `deadline`; a Refused when IM said no."""

    def ensure_group(self, group_id: str, name: str) -> None:
        """Make sure the group of a room that exists already is there (queued, in order with the
        group's other calls; a failure is logged and counted, the group is left alone)."""

    def notify_pusher_change(self, group_id: str) -> None:
        """Tell the group's clients to re-read get_pushers (queued, collapsed)."""

    def send_notification(self, group_id: str, content: str) -> bool:
        """Queue a system notification with `content` (an operator's); False when IM's queue is full."""

    def group_state(self, group_id: str) -> dict[str, object]:
        """What this process is doing with the group at IM, for the admin API."""

    def destroy_group(self, group_id: str, *, on_done: Callable[[], None] | None = None) -> None:
        """Destroy the room's IM group (queued); `on_done` runs once IM confirmed it is gone."""
