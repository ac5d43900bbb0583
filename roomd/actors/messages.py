"""What rooms and directories are told and what they answer with.

Payloads are frozen dataclasses of plain data only, so that a message can
later cross a process boundary unchanged; the reply slot travels beside the
payload in the `Envelope`, never inside it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CloseReason(enum.Enum):
    IDLE = "idle"  # nobody joined within max_idle_duration
    EMPTY = "empty"  # the last member left or timed out
    CREATOR_LEFT = "creator_left"  # the creator left or timed out
    DESTROYED = "destroyed"  # destroy_room by the creator
    SHUTDOWN = "shutdown"  # the server is stopping
    CRASHED = "crashed"  # the room actor failed; see its stack trace


class LeaveReason(enum.Enum):
    LEFT = "left"  # delete_pusher
    TIMEOUT = "timeout"  # no heartbeat within heartbeat_timeout
    ROOM_CLOSED = "room_closed"  # the room closed around the member


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """What a member told the server about itself when joining."""

    user_id: str
    user_name: str
    user_avatar: str
    push_url: str


@dataclass(frozen=True, slots=True)
class MemberView:
    """What other clients may see of a member (never its pushURL)."""

    user_id: str
    user_name: str
    user_avatar: str
    stream: str | None  # the stream name in the member's pushURL, if it has one


@dataclass(frozen=True, slots=True, weakref_slot=True)
class RoomSnapshot:
    room_id: str
    room_info: str
    creator: str
    members: tuple[MemberView, ...]


# --- room messages ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join:
    """add_pusher: join, or update name/avatar/pushURL when already a member."""

    member: MemberInfo
    room_info: str | None = None


@dataclass(frozen=True, slots=True)
class JoinResult:
    joined: bool  # a new member, not an update
    changed: bool  # something others can see changed


@dataclass(frozen=True, slots=True)
class Leave:
    user_id: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    user_id: str


@dataclass(frozen=True, slots=True)
class GetRoom:
    pass


@dataclass(frozen=True, slots=True)
class Destroy:
    """destroy_room: closes the room if `user_id` is its creator."""

    user_id: str


RoomMessage = Join | Leave | Heartbeat | GetRoom | Destroy


# --- directory messages ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRoom:
    """create_room. `first_member` set = seed-era clients: the creator joins at once.

    `address` is the client's network address, for the per-address room limit."""

    creator: str
    room_info: str
    room_id: str | None = None
    first_member: MemberInfo | None = None
    address: str | None = None


DirectoryMessage = CreateRoom
