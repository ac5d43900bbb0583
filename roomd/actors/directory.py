"""One directory per room kind: roomID -> room mailbox, room creation, and listing summaries.

The directory is the only place that knows where a room lives. Creation is
serialised through its mailbox: a roomID is reserved the moment the
request is read, so two creations of one roomID give one room. Requests
for a room are routed straight to the room's own mailbox; listings are
answered from the `RoomIndex` and never message a room.

The directory holds no room's state: a room is made with its first members,
and tells the directory what changed (`RoomReport` messages: new summary,
member gone, room closed), which the directory applies to its index and
counts. Reports are applied as they come and, before any creation or
listing, whatever is still queued, so a closed room is never listed and
its roomID is free at once.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import trio
from loguru import logger

from roomd.actors.events import event
from roomd.actors.ids import new_room_id
from roomd.actors.messages import (
    AdminPage,
    AdminRoom,
    Ask,
    Audience,
    Change,
    CloseReason,
    CreateRoom,
    CustomFields,
    Describe,
    GroupDestroyed,
    Join,
    LeaveReason,
    MemberDeparted,
    MemberInfo,
    MemberSaved,
    RoomChanged,
    RoomClosed,
    RoomDescription,
    RoomMessage,
    RoomRemoved,
    RoomReport,
    RoomSaved,
    RoomSnapshot,
)
from roomd.actors.ports import ChangeStore, ImPort
from roomd.actors.replies import DomainError, Ok, Refused, no_such_room
from roomd.actors.room import NOT_SAVED, STORE_BEHIND, Room
from roomd.actors.room_index import RoomIndex
from roomd.actors.runtime import GONE, Envelope, Mailbox, open_mailbox, refuse_pending, supervised
from roomd.actors.stats import KindStats
from roomd.actors.store import SavedRoom
from roomd.config import KindSettings

R = TypeVar("R")
DESCRIBE_WAIT = 0.5  # seconds /debug/actors waits for one room's description
DESCRIBE_BUDGET = 2.0  # seconds it spends on one directory's rooms in all
RECENT_CLOSES = 50  # closes remembered for the console


@dataclass(frozen=True, slots=True)
class _Owner:
    """Who created a room, for the per-creator and per-address limits."""

    creator: str
    address: str | None


class Directory:
    def __init__(
        self,
        *,
        kind_name: str,
        kind: KindSettings,
        im: ImPort,
        store: ChangeStore,
        mailbox_size: int,
        call_timeout: float,
        path: str,
    ) -> None:
        self.kind_name = kind_name
        self.kind = kind
        self.path = path
        self.index = RoomIndex()
        self._closes: dict[CloseReason, int] = {}
        self.recent_closes: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=RECENT_CLOSES)
        self._departures: dict[LeaveReason, int] = {}
        self.started_at = trio.current_time()
        self._im = im
        self._store = store
        self._mailbox_size = mailbox_size
        self._call_timeout = call_timeout
        self._rooms: dict[str, Mailbox[RoomMessage]] = {}
        self._pending: set[str] = set()
        self._released: set[str] = set()  # handed over to another node, their actors still ending
        self._joins_waiting: dict[str, list[Envelope[Any]]] = {}  # join-creations of a room being made
        self._pending_waiting = 0  # creations in progress of rooms that will wait for a member
        self._owners: dict[str, _Owner] = {}  # open and pending rooms
        self._open_by_creator: collections.Counter[str] = collections.Counter()
        self._open_by_address: collections.Counter[str] = collections.Counter()
        self._stopping = False
        self._nursery: trio.Nursery | None = None
        self.mailbox, self._inbox = open_mailbox(f"directory {kind_name}", mailbox_size)
        # reports from rooms, one per change; applied as soon as the directory's task runs
        self._reports: collections.deque[RoomReport] = collections.deque()
        self._reports_waiting = trio.Event()
        self.emit_events = False  # webhooks configured: rooms save events with their changes
        # whether rooms may apply their deadlines now (cluster mode: while this node holds its lease)
        self.may_expire: Callable[[], bool] = lambda: True
        # told of every report once applied (cluster mode: the nodes relaying this kind's heartbeats)
        self.observer: Callable[[str, RoomReport], None] | None = None
        self.log = logger.bind(actor=path)

    # --- the actor loop -----------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Directory] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve creations until the mailbox is closed, then close every room."""
        self.log.info(
            "directory started max_members={} heartbeat_timeout={:g}s max_idle_duration={:g}s",
            self.kind.max_members,
            self.kind.heartbeat_timeout,
            self.kind.max_idle_duration,
        )
        async with self._inbox, trio.open_nursery() as reports:
            reports.start_soon(self._apply_reports_as_they_come)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._restore_rooms()
                task_status.started(self)
                await supervised(f"directory {self.kind_name}", self._serve_creations, log=self.log)
                self._stopping = True
                refuse_pending(self._inbox, Refused(DomainError.BUSY, "the server is shutting down"))
                for mailbox in list(self._rooms.values()):
                    mailbox.close()
                self.log.info("directory stopping rooms={}", len(self._rooms))
            self._apply_queued_reports()
            reports.cancel_scope.cancel()
        self.log.info("directory stopped")

    async def _serve_creations(self) -> None:
        async for envelope in self._inbox:
            try:
                self._apply_queued_reports()
                self._begin_create(envelope)
            except Exception:
                envelope.answer(Refused(DomainError.INTERNAL, "the room directory failed on this request"))
                raise

    def stop(self) -> None:
        """Stop taking creations; rooms close with reason `shutdown`."""
        self.mailbox.close()

    # --- creation -----------------------------------------------------------

    async def create_room(self, request: CreateRoom, *, deadline: float | None = None) -> Ok[str] | Refused:
        """Create a room; the answer comes by `deadline` (default: server.call_timeout from now)."""
        if deadline is None:
            deadline = trio.current_time() + self._call_timeout
        result = await self.mailbox.call(request, deadline=deadline)
        if result is GONE:
            return Refused(DomainError.BUSY, "the server is shutting down")
        return result

    def _begin_create(self, envelope: Envelope[Any]) -> None:
        request: CreateRoom = envelope.message
        room_id = request.room_id
        if room_id is not None and request.join_if_exists:
            if room_id in self._rooms:
                assert self._nursery is not None
                self._nursery.start_soon(self._join_instead, room_id, envelope)
                return
            if room_id in self._pending:  # joins it once it is made
                self._joins_waiting.setdefault(room_id, []).append(envelope)
                return
        if room_id is not None and (room_id in self._rooms or room_id in self._pending):
            envelope.answer(Refused(DomainError.ROOM_EXISTS, f"room {room_id} already exists"))
            return
        refusal = self._over_a_limit(request)
        if refusal is None and not self._store.accepting:
            refusal = Refused(DomainError.BUSY, STORE_BEHIND)
        if refusal is not None:
            envelope.answer(refusal)
            return
        while room_id is None or room_id in self._rooms or room_id in self._pending:
            room_id = new_room_id()
        self._pending.add(room_id)
        if request.first_member is None:
            self._pending_waiting += 1
        self._count_owner(room_id, _Owner(request.creator, request.address))
        assert self._nursery is not None
        self._nursery.start_soon(self._finish_create, room_id, envelope)

    def _over_a_limit(self, request: CreateRoom) -> Refused | None:
        kind, name = self.kind, self.kind_name
        if request.first_member is None and kind.max_waiting_rooms:
            waiting = self.index.room_count - self.index.listed_count + self._pending_waiting
            if waiting >= kind.max_waiting_rooms:
                return Refused(
                    DomainError.LIMITED,
                    f"{waiting} {name} rooms are waiting for their first member, the most allowed "
                    f"(kinds.{name}.max_waiting_rooms); retry later",
                )
        held = self._open_by_creator[request.creator]
        if kind.max_rooms_per_creator and held >= kind.max_rooms_per_creator:
            return Refused(
                DomainError.LIMITED,
                f"{request.creator} already created {held} open {name} rooms, the most allowed "
                f"(kinds.{name}.max_rooms_per_creator); destroy one first",
            )
        if request.address is not None and kind.max_rooms_per_address:
            held = self._open_by_address[request.address]
            if held >= kind.max_rooms_per_address:
                return Refused(
                    DomainError.LIMITED,
                    f"{held} open {name} rooms were created from {request.address}, the most allowed "
                    f"(kinds.{name}.max_rooms_per_address)",
                )
        return None

    def _count_owner(self, room_id: str, owner: _Owner) -> None:
        self._owners[room_id] = owner
        self._open_by_creator[owner.creator] += 1
        if owner.address is not None:
            self._open_by_address[owner.address] += 1

    def _forget_owner(self, room_id: str) -> None:
        owner = self._owners.pop(room_id, None)
        if owner is None:
            return
        for counts, key in ((self._open_by_creator, owner.creator), (self._open_by_address, owner.address)):
            if key is not None:
                counts[key] -= 1
                if counts[key] <= 0:
                    del counts[key]

    async def _finish_create(self, room_id: str, envelope: Envelope[Any]) -> None:
        """Create the room; a failure here (a bug) fails this creation only and undoes what it made."""
        request: CreateRoom = envelope.message
        made: set[str] = set()  # "group", "saved": what exists of the room so far
        try:
            await self._create(room_id, envelope, made)
        except Exception:
            self.log.exception("room creation failed room={}", room_id)
            envelope.answer(Refused(DomainError.INTERNAL, "the room directory failed on this request"))
            if room_id not in self._rooms:
                if "saved" in made:
                    first = (request.first_member,) if request.first_member is not None else ()
                    self._store.write_later(self._unmade(room_id, first), about=f"{self.path}/{room_id}")
                if "group" in made:
                    self._destroy_group(room_id)
        finally:
            self._pending.discard(room_id)
            if request.first_member is None:
                self._pending_waiting -= 1
            if room_id not in self._rooms:
                self._forget_owner(room_id)
            for waiting in self._joins_waiting.pop(room_id, []):
                if room_id in self._rooms:
                    assert self._nursery is not None
                    self._nursery.start_soon(self._join_instead, room_id, waiting)
                else:
                    waiting.answer(Refused(DomainError.BUSY, f"room {room_id} could not be made; retry"))

    async def _join_instead(self, room_id: str, envelope: Envelope[Any]) -> None:
        """A join-creation of a room that exists: its member joins (a failure here fails it only)."""
        request: CreateRoom = envelope.message
        assert request.first_member is not None
        try:
            joined = await self.call_room(room_id, Join(request.first_member), deadline=envelope.deadline)
        except Exception:
            self.log.exception("join instead of a creation failed room={}", room_id)
            joined = Refused(DomainError.INTERNAL, "the room directory failed on this request")
        envelope.answer(Ok(room_id) if isinstance(joined, Ok) else joined)

    async def _create(self, room_id: str, envelope: Envelope[Any], made: set[str]) -> None:
        request: CreateRoom = envelope.message
        refusal = await self._im.create_group(room_id, request.room_info, deadline=envelope.deadline)
        if refusal is not None:
            self.log.warning("room not created room={} because {}", room_id, refusal.detail)
            envelope.answer(refusal)
            return
        made.add("group")
        if self._stopping or envelope.abandoned:
            self._destroy_group(room_id)
            self._not_created(room_id, envelope, "the server is shutting down" if self._stopping else None)
            return
        first = (request.first_member,) if request.first_member is not None else ()
        changes: list[Change] = [
            RoomSaved(self.kind_name, room_id, request.creator, request.room_info, created=True),
            *(MemberSaved(self.kind_name, room_id, member) for member in first),
        ]
        if self.emit_events:
            changes.append(event("room_created", self.kind_name, room_id, member=request.creator))
            changes.extend(event("member_joined", self.kind_name, room_id, member=m.user_id) for m in first)
        if envelope.reply is not None:
            envelope.reply.committing = True  # the caller hears how the write went, not "busy" about a room made
        failure = await self._store.write(changes, deadline=envelope.deadline)
        if failure is not None:
            if failure.maybe_written:  # it may be saved after all: close it there too
                self._store.write_later(self._unmade(room_id, first), about=f"{self.path}/{room_id}")
            self._destroy_group(room_id)
            self.log.warning("room not created room={} because it could not be saved: {}", room_id, failure.reason)
            envelope.answer(Refused(DomainError.BUSY, NOT_SAVED))
            return
        made.add("saved")
        if envelope.abandoned:  # the caller hung up while the room was being saved: undo it
            removal = await self._store.write(self._unmade(room_id, first))
            if removal is not None:
                self.log.error("room {} stays in the store until the next start: {}", room_id, removal.reason)
            self._destroy_group(room_id)
            self._not_created(room_id, envelope, None)
            return
        self._start_room(self._new_room(room_id, request.creator, request.room_info, first), request)
        envelope.answer(Ok(room_id))

    def _unmade(self, room_id: str, first: tuple[MemberInfo, ...]) -> list[Change]:
        """What closes a room that was saved but never answered for: receivers of its
        room_created hear it close (reason `abandoned`)."""
        changes: list[Change] = [RoomRemoved(self.kind_name, room_id)]
        if self.emit_events:
            changes.extend(
                event("member_left", self.kind_name, room_id, member=m.user_id, reason="room_closed") for m in first
            )
            changes.append(event("room_closed", self.kind_name, room_id, reason="abandoned"))
        return changes

    def _destroy_group(self, room_id: str) -> None:
        """Destroy the room's IM group; once IM confirms, forget the room in the store."""
        done = partial(
            self._store.write_later, [GroupDestroyed(self.kind_name, room_id)], about=f"{self.path}/{room_id}"
        )
        self._im.destroy_group(room_id, on_done=done)

    def _not_created(self, room_id: str, envelope: Envelope[Any], why: str | None) -> None:
        if why is not None:
            envelope.answer(Refused(DomainError.BUSY, why))
        self.log.info(
            "room not created room={} because {}", room_id, why or "its creator stopped waiting for the answer"
        )

    def _new_room(
        self,
        room_id: str,
        creator: str,
        room_info: str,
        members: tuple[MemberInfo, ...],
        audiences: tuple[Audience, ...] = (),
        custom: CustomFields = (),
    ) -> Room:
        return Room(
            room_id=room_id,
            kind_name=self.kind_name,
            kind=self.kind,
            creator=creator,
            room_info=room_info,
            members=members,
            audiences=audiences,
            custom=custom,
            report=self._report,
            im=self._im,
            store=self._store,
            path=f"{self.path}/{room_id}",
            mailbox_capacity=self._mailbox_size,
            may_expire=self.may_expire,
            emit_events=self.emit_events,
        )

    def _run_room(self, room: Room, *, first_join: bool) -> None:
        mailbox, inbox = open_mailbox(f"room {room.room_id}", self._mailbox_size)
        self._rooms[room.room_id] = mailbox
        self.index.upsert(room.snapshot())
        assert self._nursery is not None
        self._nursery.start_soon(self._room_task, room, inbox, first_join, name=f"room {room.room_id}")

    async def _room_task(self, room: Room, inbox: Any, first_join: bool) -> None:
        """The room's life; whatever escapes it closes that room only."""
        try:
            await room.run(inbox, first_join=first_join)
        except Exception:
            self.log.exception("room task failed room={}", room.room_id)
            self._apply(RoomClosed(room.room_id, CloseReason.CRASHED))

    def _start_room(self, room: Room, request: CreateRoom) -> None:
        """Start a room whose creation is durable, and let what its first join did follow."""
        self.log.info(
            "room created room={} creator={} with_first_member={}",
            room.room_id,
            request.creator,
            request.first_member is not None,
        )
        self._run_room(room, first_join=request.first_member is not None)

    def _restore_rooms(self) -> None:
        """The rooms of the last run: open ones run again, their IM groups made again (IM answers
        "already yours" for those that exist); closing ones lose their IM group."""
        for saved in self._store.load(self.kind_name):
            if saved.closing:
                self.log.info("room closed before the restart; destroying its IM group room={}", saved.room_id)
                self._destroy_group(saved.room_id)
                continue
            try:
                self._restore_room(saved)
            except Exception:  # one room that cannot come back must not keep the others out
                self.log.exception("room could not be restored room={}; it stays in the store", saved.room_id)
                continue
            # queued before anything the room does, so that it comes before the group's destroy
            self._im.ensure_group(saved.room_id, saved.room_info)

    def _restore_room(self, saved: SavedRoom) -> None:
        room = self._new_room(
            saved.room_id, saved.creator, saved.room_info, saved.members, saved.audiences, saved.custom
        )
        room.log.info("room restored members={} audiences={}", len(saved.members), len(saved.audiences))
        kind = self.kind
        if len(saved.members) > kind.max_members or (kind.max_audiences and len(saved.audiences) > kind.max_audiences):
            room.log.warning(
                "room restored over its kind's limits (max_members={}, max_audiences={}, lowered since it was "
                "saved?): it keeps everyone it had and takes nobody more until it is under them",
                kind.max_members,
                kind.max_audiences,
            )
        self._count_owner(saved.room_id, _Owner(saved.creator, None))
        self._run_room(room, first_join=False)

    # --- rooms coming and going between nodes --------------------------------------

    def holds(self, room_id: str) -> bool:
        """Whether the room runs here (and was not handed over), or is being made here."""
        return (room_id in self._rooms and room_id not in self._released) or room_id in self._pending

    def adopt(self, saved: SavedRoom) -> bool:
        """Run a room another node held (a takeover): restored like a room of the last run, its
        members on fresh deadlines, its IM group made sure of. False when it runs here already."""
        self._apply_queued_reports()
        if saved.room_id in self._rooms or saved.room_id in self._pending or self._stopping:
            return False
        if saved.closing:
            self.log.info("room closed by its last node; destroying its IM group room={}", saved.room_id)
            self._destroy_group(saved.room_id)
            return True
        self._restore_room(saved)
        self._im.ensure_group(saved.room_id, saved.room_info)
        return True

    def release(self, room_id: str, why: str) -> None:
        """Stop running the room here without closing it (another node holds it now): it stays
        as it is in the store, its IM group untouched."""
        mailbox = self._rooms.get(room_id)
        if mailbox is not None and room_id not in self._released:
            self.log.info("room handed over room={} because {}", room_id, why)
            self._released.add(room_id)  # until its actor has ended: not answered for, not adopted again
            mailbox.close()

    def snapshot_of(self, room_id: str) -> RoomSnapshot | None:
        """The room's members and info as last reported (never asks the room)."""
        self._apply_queued_reports()
        return self.index.get(room_id)

    def room_ids(self) -> list[str]:
        self._apply_queued_reports()
        return list(self._rooms)

    # --- routing --------------------------------------------------------------

    async def call_room(self, room_id: str, message: Ask[R], *, deadline: float | None = None) -> R | Refused:
        """Send `message` to the room and return its reply (a Refused when it is gone)."""
        mailbox = self._rooms.get(room_id)
        if mailbox is None:
            return no_such_room(room_id)
        if deadline is None:
            deadline = trio.current_time() + self._call_timeout
        result = await mailbox.call(message, deadline=deadline)
        return no_such_room(room_id) if result is GONE else result

    def admin_page(self, cursor: int, count: int, *, state: str | None) -> AdminPage:
        """Rooms made after `cursor` (-1: from the first), for the admin API."""
        if state == "closing":  # a closed room leaves the directory at once: none is closing here
            return AdminPage((), None)
        self._apply_queued_reports()
        found = self.index.after(cursor, count + 1, state=state)
        now = trio.current_time()
        rooms = tuple(
            AdminRoom(
                room_id=snapshot.room_id,
                state="active" if snapshot.members else "waiting",
                creator=snapshot.creator,
                room_info=snapshot.room_info,
                members=len(snapshot.members),
                audiences=snapshot.audience_count,
                age=round(now - started, 3),
            )
            for _, snapshot, started in found[:count]
        )
        return AdminPage(rooms, str(found[count - 1][0]) if len(found) > count else None)

    def page(self, index: int, count: int) -> list[RoomSnapshot]:
        self._apply_queued_reports()
        return self.index.page(index, count)

    @property
    def closes(self) -> dict[CloseReason, int]:
        """Rooms closed, by reason."""
        self._apply_queued_reports()
        return dict(self._closes)

    @property
    def departures(self) -> dict[LeaveReason, int]:
        """Members gone, by reason."""
        self._apply_queued_reports()
        return dict(self._departures)

    @property
    def room_count(self) -> int:
        self._apply_queued_reports()
        return len(self._rooms)

    def room_mailboxes(self) -> dict[str, Mailbox[RoomMessage]]:
        self._apply_queued_reports()
        return dict(self._rooms)

    def stats(self) -> KindStats:
        self._apply_queued_reports()
        index = self.index
        depths = [mailbox.depth for mailbox in self._rooms.values()]
        return KindStats(
            waiting_rooms=index.room_count - index.listed_count,
            active_rooms=index.listed_count,
            members=index.member_count,
            audiences=index.audience_count,
            closes=dict(self._closes),
            departures=dict(self._departures),
            directory_mailbox_depth=self.mailbox.depth,
            room_mailbox_depth_max=max(depths, default=0),
            room_mailbox_depth_sum=sum(depths),
        )

    async def describe(self, *, limit: int) -> dict[str, Any]:
        """The directory and up to `limit` of its rooms, for /debug/actors (reads, never changes)."""
        now = trio.current_time()
        rooms = list(self._rooms.items())
        children: list[dict[str, Any]] = []
        out_of_time = now + DESCRIBE_BUDGET
        for room_id, mailbox in rooms[:limit]:
            if trio.current_time() >= out_of_time:
                why = f"not asked: the directory spent {DESCRIBE_BUDGET:g} s on this description"
                children.append({"path": f"{self.path}/{room_id}", "kind": "room", "state": "unknown", "why": why})
                continue
            deadline = min(trio.current_time() + DESCRIBE_WAIT, out_of_time)
            found = await mailbox.call(Describe(), deadline=deadline)
            if isinstance(found, Ok):
                children.append(describe_room(found.value, delivered=mailbox.delivered))
            else:
                why = "gone" if found is GONE else found.detail
                children.append({"path": f"{self.path}/{room_id}", "kind": "room", "state": "unknown", "why": why})
        return {
            "path": self.path,
            "kind": "directory",
            "state": "stopping" if self._stopping else "running",
            "mailbox": {"depth": self.mailbox.depth, "capacity": self._mailbox_size},
            "uptime": round(now - self.started_at, 3),
            "rooms": len(rooms),
            "children": children,
        }

    # --- what rooms report ----------------------------------------------------

    def _report(self, report: RoomReport) -> None:
        self._reports.append(report)
        self._reports_waiting.set()

    async def _apply_reports_as_they_come(self) -> None:
        while True:
            await self._reports_waiting.wait()
            self._reports_waiting = trio.Event()
            self._apply_queued_reports()

    def _apply_queued_reports(self) -> None:
        while self._reports:
            report = self._reports.popleft()
            try:
                self._apply(report)
                if self.observer is not None:
                    self.observer(self.kind_name, report)
            except Exception:  # a bug: the index may be off for that room, the directory goes on
                self.log.exception("a room's report could not be applied")

    def _apply(self, report: RoomReport) -> None:
        match report:
            case RoomChanged(snapshot):
                if snapshot.room_id in self._rooms:
                    self.index.upsert(snapshot)
            case MemberDeparted(reason=reason):
                self._departures[reason] = self._departures.get(reason, 0) + 1
            case RoomClosed(room_id, reason):
                self._released.discard(room_id)
                if reason is not CloseReason.SHUTDOWN:
                    self.recent_closes.append((time.time(), room_id, reason.value))
                if self._rooms.pop(room_id, None) is not None:
                    self.index.remove(room_id)
                    self._forget_owner(room_id)
                    self._closes[reason] = self._closes.get(reason, 0) + 1


def describe_room(room: RoomDescription, *, delivered: int) -> dict[str, Any]:
    return {
        "path": room.path,
        "kind": "room",
        "state": room.state.value,
        "uptime": room.uptime,
        "members": room.members,
        "audiences": room.audiences,
        "next_deadline_in": room.next_deadline_in,
        "mailbox": {"depth": room.mailbox_depth, "capacity": room.mailbox_capacity, "delivered": delivered},
    }
