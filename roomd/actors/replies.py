"""Replies are values: `Ok(value)` or `Refused(error, detail)`, never exceptions across tasks.

Each `DomainError` is one reason a request can be turned down; the HTTP edge
maps it to the protocol's `code` and `message`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class DomainError(enum.Enum):
    NO_ROOM = "no_room"  # the room does not exist (or no longer)
    NOT_CREATOR = "not_creator"  # only the creator may destroy a room
    NOT_MEMBER = "not_member"  # the caller is not a member of the room
    ROOM_FULL = "room_full"  # the room already holds max_members (or max_audiences)
    INVALID = "invalid"  # the request breaks a rule only the room can check (a custom field's)
    ROOM_EXISTS = "room_exists"  # create_room with a roomID already in use
    UPSTREAM_FAILED = "upstream_failed"  # Tencent IM refused or could not be reached
    BUSY = "busy"  # a mailbox is full, an actor too slow, storage failing, or shutting down
    LIMITED = "limited"  # a per-client or per-kind limit on rooms was reached
    INTERNAL = "internal"  # an actor failed while handling the request


@dataclass(frozen=True)
class Ok(Generic[T]):
    value: T


@dataclass(frozen=True)
class Refused:
    error: DomainError
    detail: str


Reply = Ok[T] | Refused


def no_such_room(room_id: str) -> Refused:
    return Refused(DomainError.NO_ROOM, f"room {room_id} does not exist")
