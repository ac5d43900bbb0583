"""Everything that crosses the room router: requests, their replies, rooms' reports, changes.

All of it is frozen dataclasses of plain data (strings, numbers, enums,
tuples, other such dataclasses), so the same values travel in-process, over
a node link and into the journal (codec.py turns each into bytes and back).
A request says the type of its reply by what it derives from: `Join` is an
`Ask[Ok[None] | Refused]`, and `Mailbox.call` returns exactly that type,
so a caller that reads the wrong kind of answer fails the type check. The
reply slot travels beside the payload in the `Envelope`, never inside it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from roomd.actors.replies import Ok, Refused

R_co = TypeVar("R_co", covariant=True)


class Ask(Generic[R_co]):
    """A request whose answer is an `R_co` (every answer may also be a `Refused`)."""

    __slots__ = ()


class CloseReason(enum.Enum):
    IDLE = "idle"  # nobody joined within max_idle_duration
    EMPTY = "empty"  # the last member left or timed out
    CREATOR_LEFT = "creator_left"  # the creator left or timed out
    DESTROYED = "destroyed"  # destroy_room by the creator
    SHUTDOWN = "shutdown"  # the server is stopping
    CRASHED = "crashed"  # the room actor failed; see its stack trace
    ADMIN_CLOSED = "admin_closed"  # closed through the admin API


class LeaveReason(enum.Enum):
    LEFT = "left"  # delete_pusher
    TIMEOUT = "timeout"  # no heartbeat within heartbeat_timeout
    ROOM_CLOSED = "room_closed"  # the room closed around the member
    KICKED = "kicked"  # removed through the admin API


class RoomState(enum.Enum):
    WAITING = "waiting"  # created, nobody has joined yet
    ACTIVE = "active"  # at least one member
    CLOSED = "closed"  # gone from the directory; answers 'no such room'


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


@dataclass(frozen=True, slots=True)
class Audience:
    """A viewer of the room: listed, never pushing, never heartbeating."""

    user_id: str
    user_info: str  # opaque to roomd: the later clients send a JSON string with userName and userAvatar


class CustomOperation(enum.Enum):
    SET = "set"
    INC = "inc"
    DEC = "dec"


CustomFields = tuple[tuple[str, str | int], ...]
"""A room's custom fields, (name, value) in the order they were first set: a string
(set) or an integer (inc, dec)."""


@dataclass(frozen=True, slots=True, weakref_slot=True)
class RoomSnapshot:
    room_id: str
    room_info: str
    creator: str
    members: tuple[MemberView, ...]
    audience_count: int = 0
    custom: CustomFields = ()


@dataclass(frozen=True, slots=True)
class RoomDescription:
    """One room for /debug/actors."""

    path: str
    state: RoomState
    uptime: float
    members: int
    next_deadline_in: float | None
    mailbox_depth: int
    mailbox_capacity: int
    audiences: int = 0


# --- requests to a room ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join(Ask[Ok[None] | Refused]):
    """add_pusher: join, or update name/avatar/pushURL when already a member."""

    member: MemberInfo
    room_info: str | None = None


@dataclass(frozen=True, slots=True)
class Leave(Ask[Ok[None] | Refused]):
    user_id: str


@dataclass(frozen=True, slots=True)
class Heartbeat(Ask[Ok[None] | Refused]):
    user_id: str


@dataclass(frozen=True, slots=True)
class Heartbeats(Ask[Ok[None]]):
    """Heartbeats another node answered for this room's members (cluster mode): each member
    still here gets a fresh deadline; the others are gone already and are skipped."""

    user_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GetRoom(Ask[Ok[RoomSnapshot] | Refused]):
    pass


@dataclass(frozen=True, slots=True)
class Destroy(Ask[Ok[None] | Refused]):
    """destroy_room: closes the room if `user_id` is its creator."""

    user_id: str


@dataclass(frozen=True, slots=True)
class Describe(Ask[Ok[RoomDescription] | Refused]):
    """The room as /debug/actors shows it."""


@dataclass(frozen=True, slots=True)
class AddAudience(Ask[Ok[None] | Refused]):
    """add_audience: list a viewer, or update the userInfo of one already listed."""

    audience: Audience


@dataclass(frozen=True, slots=True)
class RemoveAudience(Ask[Ok[None] | Refused]):
    """delete_audience: Ok also when `user_id` is not listed."""

    user_id: str


@dataclass(frozen=True, slots=True)
class GetAudiences(Ask[Ok[tuple[Audience, ...]] | Refused]):
    """The audiences in joining order."""


@dataclass(frozen=True, slots=True)
class SetCustomField(Ask[Ok[CustomFields] | Refused]):
    """set_custom_field; the answer is every custom field after the change. `value` is what
    SET stores; `member` set: refused unless that user is a member (token mode)."""

    name: str
    operation: CustomOperation
    value: str | None = None
    member: str | None = None


@dataclass(frozen=True, slots=True)
class MemberDetail:
    """A member as an operator sees it: what it said about itself, and when it is due."""

    user_id: str
    user_name: str
    user_avatar: str
    deadline_in: float  # seconds until it is evicted without a heartbeat


@dataclass(frozen=True, slots=True)
class RoomDetail:
    """Everything about one room, for the admin API."""

    room_id: str
    state: RoomState
    creator: str
    room_info: str
    age: float  # seconds since the room started here (made, restored or taken over)
    idle_deadline_in: float | None  # a waiting room: seconds until it closes with nobody in it
    members: tuple[MemberDetail, ...]
    audiences: tuple[Audience, ...]
    custom: CustomFields


@dataclass(frozen=True, slots=True)
class AdminRoom:
    """One room in the admin API's listing."""

    room_id: str
    state: str  # waiting, active, or (cluster mode) closing
    creator: str
    room_info: str
    members: int
    audiences: int
    age: float  # seconds since it was made (cluster mode) or started on this node


@dataclass(frozen=True, slots=True)
class AdminPage:
    rooms: tuple[AdminRoom, ...]
    cursor: str | None  # where the next page starts; None: this was the last


@dataclass(frozen=True, slots=True)
class Inspect(Ask[Ok[RoomDetail] | Refused]):
    """The admin API's view of a room (changes nothing)."""


@dataclass(frozen=True, slots=True)
class Kick(Ask[Ok[None] | Refused]):
    """Remove a member (reason `kicked`); its next heartbeat gets 5."""

    user_id: str


@dataclass(frozen=True, slots=True)
class AdminClose(Ask[Ok[None] | Refused]):
    """Close the room (reason `admin_closed`)."""


@dataclass(frozen=True, slots=True)
class AdminUpdate(Ask[Ok[RoomDetail] | Refused]):
    """Set the room's info (None: keep it) and custom fields (set to these values)."""

    room_info: str | None
    custom: CustomFields


RoomMessage = (
    Join
    | Leave
    | Heartbeat
    | Heartbeats
    | GetRoom
    | Destroy
    | Describe
    | AddAudience
    | RemoveAudience
    | GetAudiences
    | SetCustomField
    | Inspect
    | Kick
    | AdminClose
    | AdminUpdate
)


# --- requests to a directory ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRoom(Ask[Ok[str] | Refused]):
    """create_room; the answer is the new roomID. `first_member` set = seed-era clients:
    the creator joins at once. `address` is the client's, for the per-address room limit.
    `join_if_exists`: add_pusher entering a roomID that did not exist (later clients): when
    the room exists by now, or is being made, `first_member` joins it instead (answer: its
    roomID, or why the join was refused)."""

    creator: str
    room_info: str
    room_id: str | None = None
    first_member: MemberInfo | None = None
    address: str | None = None
    join_if_exists: bool = False


# --- what a room reports to its directory (no answer) ---------------------------------


@dataclass(frozen=True, slots=True)
class RoomChanged:
    """The member list or room info changed (never sent for heartbeats)."""

    snapshot: RoomSnapshot


@dataclass(frozen=True, slots=True)
class MemberDeparted:
    room_id: str
    user_id: str
    reason: LeaveReason


@dataclass(frozen=True, slots=True)
class RoomClosed:
    """The room has closed (or stopped for a restart): the directory forgets it."""

    room_id: str
    reason: CloseReason


RoomReport = RoomChanged | MemberDeparted | RoomClosed


# --- changes: what is written to the store ---------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomSaved:
    """The room as made (`created`: a new room, nothing of an earlier room of its ID is kept),
    or its info changed."""

    kind: str
    room_id: str
    creator: str
    room_info: str
    created: bool = False


@dataclass(frozen=True, slots=True)
class MemberSaved:
    kind: str
    room_id: str
    member: MemberInfo


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    kind: str
    room_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class RoomRemoved:
    """The room closed: its members, audiences and custom fields go; the room stays, marked closing,
    until its IM group is gone."""

    kind: str
    room_id: str


@dataclass(frozen=True, slots=True)
class GroupDestroyed:
    """IM confirmed that a closed room's group is gone: nothing of the room is left to do."""

    kind: str
    room_id: str


@dataclass(frozen=True, slots=True)
class AudienceSaved:
    kind: str
    room_id: str
    audience: Audience


@dataclass(frozen=True, slots=True)
class AudienceRemoved:
    kind: str
    room_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class CustomFieldSaved:
    kind: str
    room_id: str
    name: str
    value: str | int


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """What a webhook receiver is told (README, Operations: Webhooks)."""

    id: str  # unique; the same on every retry
    event: str  # room_created, room_closed, member_joined, member_left, audience_joined, audience_left
    time: float  # unix time it happened
    kind: str
    room_id: str
    member: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class EventQueued:
    """A webhook event, saved with the change it tells of (so none is lost, none is told early)."""

    kind: str
    room_id: str
    event: WebhookEvent


@dataclass(frozen=True, slots=True)
class EventDelivered:
    """A receiver has the event in outbox row `row` (or it was dropped): the row goes."""

    kind: str
    room_id: str
    row: int


Change = (
    RoomSaved
    | MemberSaved
    | MemberRemoved
    | RoomRemoved
    | GroupDestroyed
    | AudienceSaved
    | AudienceRemoved
    | CustomFieldSaved
    | EventQueued
    | EventDelivered
)


# --- between nodes (cluster mode): what one node asks the node that owns a room --------


@dataclass(frozen=True, slots=True)
class ForwardedCall:
    """A room call sent on to the room's owner; `time_left`: seconds the caller still waits
    (clocks of two processes do not compare, durations do)."""

    kind: str
    room_id: str
    message: RoomMessage
    time_left: float


@dataclass(frozen=True, slots=True)
class ForwardedCreate:
    """A join-creation (add_pusher on a roomID that did not exist) of a room another node
    claimed meanwhile: the owner's directory joins the member to it."""

    kind: str
    request: CreateRoom
    time_left: float


@dataclass(frozen=True, slots=True)
class Moved:
    """The answer of a node that does not run the room (any more): ask Redis who does."""

    room_id: str


@dataclass(frozen=True, slots=True)
class RelayedHeartbeats:
    """Members of rooms this node owns that heartbeated on another node: (kind, roomID, userID)
    each, sent in one batch per peer; the owner moves their deadlines as for a heartbeat."""

    beats: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class MembersKnown:
    """What the owner (`owner`, its lease's name) tells a relaying node of one room: who may
    heartbeat there (empty: nobody, the room is gone or moved)."""

    kind: str
    room_id: str
    user_ids: tuple[str, ...]
    owner: str


@dataclass(frozen=True, slots=True)
class WatchMembers:
    """A node (`watcher`, its owner name) asks the owner for the members of a room, and to be
    told when they change."""

    kind: str
    room_id: str
    watcher: str
