"""One room: its members, their heartbeat deadlines, its audiences and custom fields, and its lifecycle.

The room is the only owner of its state. It handles one message at a time,
without awaiting in between, so every change is atomic and applied in
arrival order. It sleeps until its own next deadline (the earliest member
deadline, or the idle deadline while waiting), so a silent member is
evicted at its deadline, not by a periodic sweep.

A step (one message, or the deadlines that have passed) changes the room
in memory and records what must be saved and what must follow (IM
notifications, the directory's index and counts, log lines). For a
request, the room writes the changes and waits until they are durable
before it answers or lets anything follow; when the write fails, the step
is undone, the request is answered "busy" and nothing else happens, so the
room stays as it was before the request. What the room does by itself (an
eviction, an idle close, a close on shutdown or crash) happens at once and
is written in the background, in order with the room's other writes (the
store tries such a write again until the disk takes it; only one the
process could not write before it stopped comes back at the next start: a
member with a fresh deadline, evicted again).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from loguru import logger

from roomd.actors.events import event
from roomd.actors.messages import (
    AddAudience,
    AdminClose,
    AdminUpdate,
    Audience,
    AudienceRemoved,
    AudienceSaved,
    Change,
    CloseReason,
    CustomFields,
    CustomFieldSaved,
    CustomOperation,
    Describe,
    Destroy,
    GetAudiences,
    GetRoom,
    GroupDestroyed,
    Heartbeat,
    Heartbeats,
    Inspect,
    Join,
    Kick,
    Leave,
    LeaveReason,
    MemberDeparted,
    MemberDetail,
    MemberInfo,
    MemberRemoved,
    MemberSaved,
    MemberView,
    RemoveAudience,
    RoomChanged,
    RoomClosed,
    RoomDescription,
    RoomDetail,
    RoomMessage,
    RoomRemoved,
    RoomReport,
    RoomSaved,
    RoomSnapshot,
    RoomState,
    SetCustomField,
)
from roomd.actors.ports import ChangeStore, ImPort
from roomd.actors.replies import DomainError, Ok, Refused, no_such_room
from roomd.actors.runtime import Envelope, refuse_pending
from roomd.actors.store import WriteFailed
from roomd.config import KindSettings
from roomd.qcloud.live import stream_name_from_push_url

NOT_SAVED = "the change could not be saved (the server's storage failed); nothing was changed, retry shortly"
STORE_BEHIND = "the server's storage is behind or failing; nothing was changed, retry shortly"
# a change's write must start this long before its caller's deadline, so that it ends in time
STORE_GRACE = 0.25
TIMERS_HELD_RETRY = 0.1  # seconds between looks at whether held deadlines may be applied
CHANGES = (  # may change what is stored
    Join,
    Leave,
    Destroy,
    AddAudience,
    RemoveAudience,
    SetCustomField,
    Kick,
    AdminClose,
    AdminUpdate,
)
MAX_CUSTOM_FIELDS = 16  # per room
MAX_SAFE_INTEGER = 2**53 - 1  # what a JavaScript client reads exactly: inc and dec stay within it
_INTEGER_TEXT = re.compile(r"0|-?[1-9][0-9]{0,15}")


@dataclass(slots=True)
class Member:
    info: MemberInfo
    deadline: float

    def view(self) -> MemberView:
        return MemberView(
            user_id=self.info.user_id,
            user_name=self.info.user_name,
            user_avatar=self.info.user_avatar,
            stream=stream_name_from_push_url(self.info.push_url),
        )


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """What a step may change, as it was before the step."""

    state: RoomState
    room_info: str
    close_reason: CloseReason | None
    members: tuple[tuple[MemberInfo, float], ...]
    audiences: tuple[tuple[str, str], ...]
    custom: CustomFields


class Room:
    def __init__(
        self,
        *,
        room_id: str,
        kind_name: str,
        kind: KindSettings,
        creator: str,
        room_info: str,
        members: tuple[MemberInfo, ...] = (),
        audiences: tuple[Audience, ...] = (),
        custom: CustomFields = (),
        report: Callable[[RoomReport], None],
        im: ImPort,
        store: ChangeStore,
        path: str,
        mailbox_capacity: int = 0,
        may_expire: Callable[[], bool] = lambda: True,
        emit_events: bool = False,
    ) -> None:
        """A room holding `members` (the creator of a seed-era room, or the members saved
        before a restart), each with a fresh deadline, and the `audiences` and `custom` fields
        saved before a restart; what changes is told to `report`."""
        self.room_id = room_id
        self.kind_name = kind_name
        self.kind = kind
        self._store = store
        self._changes: list[Change] = []  # made by the step being handled, not yet saved
        self._effects: list[Callable[[], None]] = []  # what follows the step once it is saved
        self.creator = creator
        self.room_info = room_info
        self.started_at = trio.current_time()
        deadline = self.started_at + kind.heartbeat_timeout
        self.members: dict[str, Member] = {info.user_id: Member(info, deadline) for info in members}
        self.state = RoomState.ACTIVE if self.members else RoomState.WAITING
        self.audiences: dict[str, str] = {a.user_id: a.user_info for a in audiences}  # in joining order
        self.custom: dict[str, str | int] = dict(custom)
        self.close_reason: CloseReason | None = None
        self.kept = False  # stopped with the server, its members kept in the store (not closed)
        self._report = report
        self._im = im
        self._idle_deadline = self.started_at + kind.max_idle_duration
        self._path = path
        self._mailbox_capacity = mailbox_capacity
        self._inbox: trio.MemoryReceiveChannel[Envelope[RoomMessage]] | None = None
        self._may_expire = may_expire  # False: deadlines wait (cluster mode: this node's lease is in doubt)
        self._emit_events = emit_events  # webhooks: events saved with the changes they tell of
        self._timers_held_until = -math.inf
        self.log = logger.bind(actor=path)

    # --- the actor loop ---------------------------------------------------

    async def run(self, inbox: trio.MemoryReceiveChannel[Envelope[RoomMessage]], *, first_join: bool = False) -> None:
        """Serve messages until closed; a crash closes this room only. `first_join`: the
        members it was made with have just joined (a seed-era creation), so say so."""
        self.log.info(
            "room started state={} creator={} members={}",
            self.state.value,
            self.creator,
            len(self.members),
        )
        if first_join:
            for user_id in self.members:
                self.log.info("member joined user={} members={}/{}", user_id, len(self.members), self.kind.max_members)
            self._im.notify_pusher_change(self.room_id)
        self._inbox = inbox
        async with inbox:
            try:
                await self._serve(inbox)
            except Exception:
                self.log.exception("room crashed")
                self._changes.clear()
                self._effects.clear()
                self.close(CloseReason.CRASHED)
                self._save_in_background()
            finally:
                refuse_pending(inbox, self._gone())
                reason = self.close_reason.value if self.close_reason else "cancelled"
                if self.kept:
                    self.log.info(
                        "room stopped reason={} kept in the store for the next start members={} audiences={}",
                        reason,
                        len(self.members),
                        len(self.audiences),
                    )
                else:
                    self.log.info("room stopped reason={}", reason)

    async def _serve(self, inbox: trio.MemoryReceiveChannel[Envelope[RoomMessage]]) -> None:
        while not self.closed:
            # one cancel scope per deadline reached, not per message: each message only moves it
            with trio.CancelScope(deadline=self.next_deadline()) as until_next_deadline:
                while not self.closed:
                    try:
                        envelope = await inbox.receive()
                    except trio.EndOfChannel:
                        self.close(CloseReason.SHUTDOWN)
                        self._save_in_background()
                        return
                    try:
                        result = await self._step(envelope)
                    except Exception:
                        envelope.answer(Refused(DomainError.INTERNAL, f"room {self.room_id} failed on this request"))
                        raise
                    if envelope.abandoned and isinstance(result, Ok) and isinstance(envelope.message, CHANGES):
                        # its caller hung up, or the write ended COMMIT_WAIT past the caller's deadline
                        self.log.warning("{} applied after its caller stopped waiting", type(envelope.message).__name__)
                    envelope.answer(result)
                    until_next_deadline.deadline = self.next_deadline()
            if until_next_deadline.cancelled_caught:
                if self._may_expire():
                    self.expire(trio.current_time())
                    self._save_in_background()
                else:  # this node may not own the room any more: nobody is evicted until that is known
                    self._timers_held_until = trio.current_time() + TIMERS_HELD_RETRY

    async def _step(self, envelope: Envelope[RoomMessage]) -> Any:
        """Handle one message; answer only once its changes are durable, or undo it."""
        message = envelope.message
        if not isinstance(message, CHANGES):  # nothing to save
            return self.handle(message)
        if not self._store.accepting:
            return Refused(DomainError.BUSY, STORE_BEHIND)
        undo = self._checkpoint()
        result = self.handle(message)
        if self._changes and envelope.reply is not None:
            envelope.reply.committing = True  # whatever the write's outcome, the caller hears it
        if await self._save(undo, envelope.deadline - STORE_GRACE):
            return result
        return Refused(DomainError.BUSY, NOT_SAVED)

    async def _save(self, undo: _Checkpoint, deadline: float) -> bool:
        """Write the changes of the last step, then let its effects follow; when the write
        fails (or cannot start before `deadline`), roll the step back to `undo` and drop
        its effects."""
        if self._changes:
            failure: WriteFailed | None = await self._store.write(self.take_changes(), deadline=deadline)
            if failure is not None:
                self._effects.clear()
                self._restore(undo)
                self.log.warning("change not saved, undone: {}", failure.reason)
                return False
        self.run_effects()
        return True

    def _save_in_background(self) -> None:
        """A step nobody waits for: its effects follow now, its changes are written in order."""
        if self._changes:
            self._store.write_later(self.take_changes(), about=self._path)
        self.run_effects()

    def run_effects(self) -> None:
        effects, self._effects = self._effects, []
        for effect in effects:
            effect()

    def _checkpoint(self) -> _Checkpoint:
        return _Checkpoint(
            self.state,
            self.room_info,
            self.close_reason,
            tuple((m.info, m.deadline) for m in self.members.values()),
            tuple(self.audiences.items()),
            tuple(self.custom.items()),
        )

    def _restore(self, checkpoint: _Checkpoint) -> None:
        self.state = checkpoint.state
        self.room_info = checkpoint.room_info
        self.close_reason = checkpoint.close_reason
        self.members = {info.user_id: Member(info, deadline) for info, deadline in checkpoint.members}
        self.audiences = dict(checkpoint.audiences)
        self.custom = dict(checkpoint.custom)

    @property
    def closed(self) -> bool:
        return self.state is RoomState.CLOSED

    def next_deadline(self) -> float:
        if self.state is RoomState.WAITING:
            deadline = self._idle_deadline
        else:
            deadline = min((m.deadline for m in self.members.values()), default=trio.current_time())
        return max(deadline, self._timers_held_until)

    # --- messages ---------------------------------------------------------

    def handle(self, message: RoomMessage) -> Any:
        if self.state is RoomState.CLOSED:
            return self._gone()
        match message:
            case Heartbeat(user_id):
                return self.heartbeat(user_id)
            case Heartbeats(user_ids):
                for user_id in user_ids:
                    self.heartbeat(user_id)
                return Ok(None)
            case Join(member, room_info):
                return self.join(member, room_info)
            case Leave(user_id):
                return self.leave(user_id)
            case GetRoom():
                return Ok(self.snapshot())
            case Describe():
                return Ok(self.describe(trio.current_time()))
            case Destroy(user_id):
                return self.destroy(user_id)
            case AddAudience(audience):
                return self.add_audience(audience)
            case RemoveAudience(user_id):
                return self.remove_audience(user_id)
            case GetAudiences():
                return Ok(tuple(Audience(user_id, info) for user_id, info in self.audiences.items()))
            case SetCustomField(name, operation, value, member):
                return self.set_custom_field(name, operation, value, member=member)
            case Inspect():
                return Ok(self.detail(trio.current_time()))
            case Kick(user_id):
                return self.kick(user_id)
            case AdminClose():
                self._later(partial(self.log.info, "room closed by=admin"))
                self.close(CloseReason.ADMIN_CLOSED)
                return Ok(None)
            case AdminUpdate(room_info, custom):
                return self.admin_update(room_info, custom)
        raise TypeError(f"a room cannot handle {message!r}")

    def heartbeat(self, user_id: str) -> Ok[None] | Refused:
        member = self.members.get(user_id)
        if member is None:
            return self._not_member(user_id)
        member.deadline = trio.current_time() + self.kind.heartbeat_timeout
        return Ok(None)

    def join(self, info: MemberInfo, room_info: str | None = None) -> Ok[None] | Refused:
        """add_pusher: join, or update a member; the creator may also change the room info.
        A refused join changes nothing."""
        existing = self.members.get(info.user_id)
        if existing is None and len(self.members) >= self.kind.max_members:
            return Refused(
                DomainError.ROOM_FULL,
                f"room {self.room_id} is full ({len(self.members)}/{self.kind.max_members})",
            )
        deadline = trio.current_time() + self.kind.heartbeat_timeout
        info_changed = room_info is not None and info.user_id == self.creator and room_info != self.room_info
        if info_changed:
            assert room_info is not None
            self.room_info = room_info
            self._changes.append(RoomSaved(self.kind_name, self.room_id, self.creator, room_info))
        if existing is not None:
            changed = existing.info != info or info_changed
            if existing.info != info:
                self._changes.append(MemberSaved(self.kind_name, self.room_id, info))
            existing.info = info
            existing.deadline = deadline
            if changed:
                self._later(partial(self.log.info, "member updated user={}", info.user_id))
                self._changed()
            return Ok(None)
        self.members[info.user_id] = Member(info, deadline)
        self._changes.append(MemberSaved(self.kind_name, self.room_id, info))
        self._emit("member_joined", member=info.user_id)
        self.state = RoomState.ACTIVE
        self._later(
            partial(
                self.log.info,
                "member joined user={} members={}/{}",
                info.user_id,
                len(self.members),
                self.kind.max_members,
            )
        )
        self._changed()
        return Ok(None)

    def leave(self, user_id: str) -> Ok[None] | Refused:
        if user_id not in self.members:
            return self._not_member(user_id)
        self._remove(user_id, LeaveReason.LEFT)
        return Ok(None)

    def destroy(self, user_id: str) -> Ok[None] | Refused:
        if user_id != self.creator:
            return Refused(
                DomainError.NOT_CREATOR,
                f"{user_id} is not the creator of room {self.room_id}; only the creator may destroy it",
            )
        self.close(CloseReason.DESTROYED)
        return Ok(None)

    def add_audience(self, audience: Audience) -> Ok[None] | Refused:
        """List a viewer, or update the userInfo of one already listed. Audiences are not members:
        they neither heartbeat nor keep the room open."""
        user_id, user_info = audience.user_id, audience.user_info
        listed = self.audiences.get(user_id)
        if listed is None and len(self.audiences) >= self.kind.max_audiences:
            return Refused(
                DomainError.ROOM_FULL,
                f"room {self.room_id} already lists {len(self.audiences)} audiences, the most allowed "
                f"(kinds.{self.kind_name}.max_audiences)",
            )
        if listed == user_info:
            return Ok(None)
        self.audiences[user_id] = user_info
        self._changes.append(AudienceSaved(self.kind_name, self.room_id, audience))
        if listed is None:
            self._emit("audience_joined", member=user_id)
            self._log_audience("audience joined user={} audiences={}/{}", user_id)
        else:
            self._later(partial(self.log.info, "audience updated user={}", user_id))
        self._changed()
        return Ok(None)

    def remove_audience(self, user_id: str) -> Ok[None]:
        if self.audiences.pop(user_id, None) is None:
            return Ok(None)
        self._changes.append(AudienceRemoved(self.kind_name, self.room_id, user_id))
        self._emit("audience_left", member=user_id, reason=LeaveReason.LEFT.value)
        self._log_audience("audience left user={} reason=left audiences={}/{}", user_id)
        self._changed()
        return Ok(None)

    def set_custom_field(
        self, name: str, operation: CustomOperation, value: str | None, *, member: str | None
    ) -> Ok[CustomFields] | Refused:
        """SET stores `value`; INC and DEC count from 0 (a missing field) or the integer the field holds."""
        if member is not None and member not in self.members:
            return Refused(
                DomainError.NOT_MEMBER,
                f"{member} is not a member of room {self.room_id}; only members set its custom fields",
            )
        current = self.custom.get(name)
        if current is None and len(self.custom) >= MAX_CUSTOM_FIELDS:
            return Refused(
                DomainError.INVALID,
                f"room {self.room_id} already has {MAX_CUSTOM_FIELDS} custom fields, the most allowed; "
                f"{name!r} is not one of them",
            )
        new: str | int
        if operation is CustomOperation.SET:
            if value is None:
                return Refused(DomainError.INVALID, "value is required for operation set")
            new = value
        else:
            number = 0 if current is None else _integer(current)
            if number is None:
                return Refused(
                    DomainError.INVALID,
                    f"custom field {name!r} holds {current!r}, not an integer; inc and dec work on integers",
                )
            new = number + (1 if operation is CustomOperation.INC else -1)
            if abs(new) > MAX_SAFE_INTEGER:
                return Refused(
                    DomainError.INVALID,
                    f"custom field {name!r} would pass {'' if new > 0 else '-'}{MAX_SAFE_INTEGER}, "
                    "the largest integer every client reads exactly",
                )
        if type(new) is not type(current) or new != current:
            self.custom[name] = new
            self._changes.append(CustomFieldSaved(self.kind_name, self.room_id, name, new))
            self._later(self._relist)
        return Ok(tuple(self.custom.items()))

    def kick(self, user_id: str) -> Ok[None] | Refused:
        if user_id not in self.members:
            return self._not_member(user_id)
        self._later(partial(self.log.info, "member removed user={} by=admin", user_id))
        self._remove(user_id, LeaveReason.KICKED)
        return Ok(None)

    def admin_update(self, room_info: str | None, custom: CustomFields) -> Ok[RoomDetail] | Refused:
        """Set the room info and custom fields at once, or nothing (over the custom field limit)."""
        added = {name for name, _ in custom if name not in self.custom}
        if len(self.custom) + len(added) > MAX_CUSTOM_FIELDS:
            return Refused(
                DomainError.INVALID,
                f"room {self.room_id} would have {len(self.custom) + len(added)} custom fields; "
                f"{MAX_CUSTOM_FIELDS} at most",
            )
        if room_info is not None and room_info != self.room_info:
            self.room_info = room_info
            self._changes.append(RoomSaved(self.kind_name, self.room_id, self.creator, room_info))
            self._later(partial(self.log.info, "room info changed by=admin"))
            self._changed()
        for name, value in custom:
            if type(value) is not type(self.custom.get(name)) or value != self.custom.get(name):
                self.custom[name] = value
                self._changes.append(CustomFieldSaved(self.kind_name, self.room_id, name, value))
                self._later(partial(self.log.info, "custom field set name={} by=admin", name))
                self._later(self._relist)
        return Ok(self.detail(trio.current_time()))

    # --- time -------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Apply every deadline that has passed by `now`."""
        if self.state is RoomState.WAITING:
            if now >= self._idle_deadline:
                self.close(CloseReason.IDLE)
            return
        expired = sorted((m for m in self.members.values() if m.deadline <= now), key=lambda m: m.deadline)
        for member in expired:
            if self.state is RoomState.CLOSED:
                return
            self._remove(member.info.user_id, LeaveReason.TIMEOUT)

    # --- changes ------------------------------------------------------------

    def _remove(self, user_id: str, reason: LeaveReason) -> None:
        del self.members[user_id]
        self._changes.append(MemberRemoved(self.kind_name, self.room_id, user_id))
        self._emit("member_left", member=user_id, reason=reason.value)
        self._later(partial(self._report, MemberDeparted(self.room_id, user_id, reason)))
        self._later(
            partial(
                self.log.info,
                "member left user={} reason={} members={}/{}",
                user_id,
                reason.value,
                len(self.members),
                self.kind.max_members,
            )
        )
        if user_id == self.creator and self.kind.creator_leave_closes_room:
            self.close(CloseReason.CREATOR_LEFT)
        elif not self.members:
            self.close(CloseReason.EMPTY)
        else:
            self._changed()

    def close(self, reason: CloseReason) -> None:
        """Close the room; safe to call more than once (the first reason stands).

        A shutdown with persistence on only stops the actor: the room, its
        members and its IM group stay, to be restored at the next start.
        """
        if self.state is RoomState.CLOSED:
            return
        self.state = RoomState.CLOSED
        self.close_reason = reason
        if reason is CloseReason.SHUTDOWN and self._store.persistent:
            self.kept = True  # its one line, when the actor ends, says so
            self._later(partial(self._report, RoomClosed(self.room_id, reason)))
            return
        self._changes.append(RoomRemoved(self.kind_name, self.room_id))
        for user_id in self.members:
            self._emit("member_left", member=user_id, reason=LeaveReason.ROOM_CLOSED.value)
        for user_id in self.audiences:
            self._emit("audience_left", member=user_id, reason=LeaveReason.ROOM_CLOSED.value)
        self._emit("room_closed", reason=reason.value)
        for user_id in self.members:
            self._later(partial(self._report, MemberDeparted(self.room_id, user_id, LeaveReason.ROOM_CLOSED)))
            self._later(
                partial(
                    self.log.info,
                    "member left user={} reason={} members=0/{}",
                    user_id,
                    LeaveReason.ROOM_CLOSED.value,
                    self.kind.max_members,
                )
            )
        self.members = {}
        for user_id in self.audiences:
            self._later(
                partial(
                    self.log.info,
                    "audience left user={} reason={} audiences=0/{}",
                    user_id,
                    LeaveReason.ROOM_CLOSED.value,
                    self.kind.max_audiences,
                )
            )
        self.audiences = {}
        self._later(partial(self._report, RoomClosed(self.room_id, reason)))
        self._later(partial(self._im.destroy_group, self.room_id, on_done=self._group_destroyed))
        self._later(partial(self.log.info, "room closed reason={}", reason.value))

    def _group_destroyed(self) -> None:
        self._store.write_later([GroupDestroyed(self.kind_name, self.room_id)], about=self._path)

    def take_changes(self) -> list[Change]:
        changes, self._changes = self._changes, []
        return changes

    def _changed(self) -> None:
        self._later(self._publish)

    def _publish(self) -> None:
        """Tell the directory's index and the room's IM group about the members as they are now."""
        if self.state is RoomState.CLOSED:
            return
        self._report(RoomChanged(self.snapshot()))
        self._im.notify_pusher_change(self.room_id)

    def _relist(self) -> None:
        """Tell the directory's index about a change that clients are not notified of."""
        if self.state is not RoomState.CLOSED:
            self._report(RoomChanged(self.snapshot()))

    def _emit(self, name: str, *, member: str | None = None, reason: str | None = None) -> None:
        if self._emit_events:
            self._changes.append(event(name, self.kind_name, self.room_id, member=member, reason=reason))

    def _log_audience(self, template: str, user_id: str) -> None:
        self._later(partial(self.log.info, template, user_id, len(self.audiences), self.kind.max_audiences))

    def _later(self, effect: Callable[[], None]) -> None:
        self._effects.append(effect)

    # --- views --------------------------------------------------------------

    def snapshot(self) -> RoomSnapshot:
        return RoomSnapshot(
            room_id=self.room_id,
            room_info=self.room_info,
            creator=self.creator,
            members=tuple(m.view() for m in self.members.values()),
            audience_count=len(self.audiences),
            custom=tuple(self.custom.items()),
        )

    def detail(self, now: float) -> RoomDetail:
        return RoomDetail(
            room_id=self.room_id,
            state=self.state,
            creator=self.creator,
            room_info=self.room_info,
            age=round(now - self.started_at, 3),
            idle_deadline_in=round(self._idle_deadline - now, 3) if self.state is RoomState.WAITING else None,
            members=tuple(
                MemberDetail(m.info.user_id, m.info.user_name, m.info.user_avatar, round(m.deadline - now, 3))
                for m in self.members.values()
            ),
            audiences=tuple(Audience(user_id, info) for user_id, info in self.audiences.items()),
            custom=tuple(self.custom.items()),
        )

    def describe(self, now: float) -> RoomDescription:
        """This room for /debug/actors, read between two messages."""
        deadline = self.next_deadline() if self.state is not RoomState.CLOSED else None
        inbox = self._inbox
        return RoomDescription(
            path=self._path,
            state=self.state,
            uptime=round(now - self.started_at, 3),
            members=len(self.members),
            next_deadline_in=None if deadline is None else round(deadline - now, 3),
            mailbox_depth=inbox.statistics().current_buffer_used if inbox is not None else 0,
            mailbox_capacity=self._mailbox_capacity,
            audiences=len(self.audiences),
        )

    def _not_member(self, user_id: str) -> Refused:
        return Refused(DomainError.NOT_MEMBER, f"{user_id} is not a member of room {self.room_id}")

    def _gone(self) -> Refused:
        return no_such_room(self.room_id)


def _integer(value: str | int) -> int | None:
    """The integer a custom field holds: an int, or a string in canonical decimal (set "10" counts on from 10)."""
    if isinstance(value, int):
        return value
    return int(value) if _INTEGER_TEXT.fullmatch(value) else None
