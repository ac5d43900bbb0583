"""One directory per room kind: roomID -> room, room creation, and listing summaries.

The directory is the only place that knows where a room lives. Creation is
serialised through its mailbox: a roomID is reserved the moment the
request is read, so two creations of one roomID give one room. Requests
for a room are routed straight to the room's own mailbox; listings are
answered from the `RoomIndex` and never message a room.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import trio
from loguru import logger

from roomd.actors.ids import new_room_id
from roomd.actors.messages import CloseReason, CreateRoom, LeaveReason, RoomMessage, RoomSnapshot
from roomd.actors.ports import ChangeStore, ImPort
from roomd.actors.replies import DomainError, Ok, Refused, no_such_room
from roomd.actors.room import NOT_SAVED, STORE_BEHIND, Room
from roomd.actors.room_index import RoomIndex
from roomd.actors.runtime import GONE, Envelope, Mailbox, open_mailbox, refuse_pending, supervised
from roomd.actors.store import RoomRemoved, RoomSaved, SavedRoom
from roomd.config import KindSettings


@dataclass(frozen=True, slots=True)
class _Owner:
    """Who created a room, for the per-creator and per-address limits."""

    creator: str
    address: str | None


@dataclass(frozen=True, slots=True)
class _RoomEntry:
    mailbox: Mailbox[RoomMessage]
    room: Room  # read only by describe(); the room's own task is its only writer


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
        self.closes: dict[CloseReason, int] = {}
        self.departures: dict[LeaveReason, int] = {}
        self.started_at = trio.current_time()
        self._im = im
        self._store = store
        self._mailbox_size = mailbox_size
        self._call_timeout = call_timeout
        self._rooms: dict[str, _RoomEntry] = {}
        self._pending: set[str] = set()
        self._pending_waiting = 0  # creations in progress of rooms that will wait for a member
        self._owners: dict[str, _Owner] = {}  # open and pending rooms
        self._open_by_creator: collections.Counter[str] = collections.Counter()
        self._open_by_address: collections.Counter[str] = collections.Counter()
        self._stopping = False
        self._nursery: trio.Nursery | None = None
        self.mailbox, self._inbox = open_mailbox(f"directory {kind_name}", mailbox_size)
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
        async with self._inbox, trio.open_nursery() as nursery:
            self._nursery = nursery
            for saved in self._store.load(self.kind_name):
                try:
                    self._restore_room(saved)
                except Exception:  # one room that cannot come back must not keep the others out
                    self.log.exception("room could not be restored room={}; it stays in the store", saved.room_id)
            task_status.started(self)
            await supervised(f"directory {self.kind_name}", self._serve_creations, log=self.log)
            self._stopping = True
            refuse_pending(self._inbox, Refused(DomainError.BUSY, "the server is shutting down"))
            for entry in list(self._rooms.values()):
                entry.mailbox.close()
            self.log.info("directory stopping rooms={}", len(self._rooms))
        self.log.info("directory stopped")

    async def _serve_creations(self) -> None:
        async for envelope in self._inbox:
            try:
                self._begin_create(envelope)
            except Exception:
                envelope.answer(Refused(DomainError.INTERNAL, "the room directory failed on this request"))
                raise

    def stop(self) -> None:
        """Stop taking creations; rooms close with reason `shutdown`."""
        self.mailbox.close()

    # --- creation -----------------------------------------------------------

    async def create_room(self, request: CreateRoom) -> Ok[str] | Refused:
        result = await self.mailbox.call(request, timeout=self._call_timeout)
        if result is GONE:
            return Refused(DomainError.BUSY, "the server is shutting down")
        return result

    def _begin_create(self, envelope: Envelope[Any]) -> None:
        request: CreateRoom = envelope.message
        room_id = request.room_id
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
        try:
            await self._create(room_id, envelope)
        except Exception:  # a bug: it fails this creation, never the directory
            self.log.exception("room creation failed room={}", room_id)
            envelope.answer(Refused(DomainError.INTERNAL, "the room directory failed on this request"))

    async def _create(self, room_id: str, envelope: Envelope[Any]) -> None:
        request: CreateRoom = envelope.message
        started = False
        try:
            refusal = await self._im.create_group(room_id, request.room_info)
            if refusal is not None:
                self.log.warning("room not created room={} because {}", room_id, refusal.detail)
                envelope.answer(refusal)
                return
            if self._stopping or envelope.abandoned:
                self._im.destroy_group(room_id)
                self._not_created(room_id, envelope, "the server is shutting down" if self._stopping else None)
                return
            room = self._new_room(room_id, request.creator, request.room_info)
            if request.first_member is not None:
                room.join(request.first_member)
            saved = RoomSaved(self.kind_name, room_id, request.creator, request.room_info)
            failure = await self._store.write([saved, *room.take_changes()])
            if failure is not None:
                self._im.destroy_group(room_id)
                self.log.warning("room not created room={} because it could not be saved: {}", room_id, failure.reason)
                envelope.answer(Refused(DomainError.BUSY, NOT_SAVED))
                return
            if envelope.abandoned:  # the caller gave up while the room was being saved: undo it
                removal = await self._store.write([RoomRemoved(self.kind_name, room_id)])
                if removal is not None:
                    self.log.error("room {} stays in the store until the next start: {}", room_id, removal.reason)
                self._im.destroy_group(room_id)
                self._not_created(room_id, envelope, None)
                return
            self._start_room(room, request)
            started = True
            envelope.answer(Ok(room_id))
        finally:
            self._pending.discard(room_id)
            if request.first_member is None:
                self._pending_waiting -= 1
            if not started:
                self._forget_owner(room_id)

    def _not_created(self, room_id: str, envelope: Envelope[Any], why: str | None) -> None:
        if why is not None:
            envelope.answer(Refused(DomainError.BUSY, why))
        self.log.info(
            "room not created room={} because {}", room_id, why or "its creator stopped waiting for the answer"
        )

    def _new_room(self, room_id: str, creator: str, room_info: str) -> Room:
        return Room(
            room_id=room_id,
            kind_name=self.kind_name,
            kind=self.kind,
            creator=creator,
            room_info=room_info,
            host=self,
            im=self._im,
            store=self._store,
            path=f"{self.path}/{room_id}",
        )

    def _run_room(self, room: Room) -> None:
        mailbox, inbox = open_mailbox(f"room {room.room_id}", self._mailbox_size)
        self._rooms[room.room_id] = _RoomEntry(mailbox, room)
        self.index.upsert(room.snapshot())
        assert self._nursery is not None
        self._nursery.start_soon(room.run, inbox, name=f"room {room.room_id}")

    def _start_room(self, room: Room, request: CreateRoom) -> None:
        """Start a room whose creation is durable, and let what its first join did follow."""
        self.log.info(
            "room created room={} creator={} with_first_member={}",
            room.room_id,
            request.creator,
            request.first_member is not None,
        )
        self._run_room(room)
        room.run_effects()

    def _restore_room(self, saved: SavedRoom) -> None:
        room = self._new_room(saved.room_id, saved.creator, saved.room_info)
        room.restore(saved.members)
        self._count_owner(saved.room_id, _Owner(saved.creator, None))
        self._run_room(room)

    # --- routing --------------------------------------------------------------

    async def call_room(self, room_id: str, message: RoomMessage) -> Any:
        """Send `message` to the room and return its reply (a Refused when it is gone)."""
        entry = self._rooms.get(room_id)
        if entry is None:
            return no_such_room(room_id)
        result = await entry.mailbox.call(message, timeout=self._call_timeout)
        return no_such_room(room_id) if result is GONE else result

    def page(self, index: int, count: int) -> list[RoomSnapshot]:
        return self.index.page(index, count)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def room_mailboxes(self) -> dict[str, Mailbox[RoomMessage]]:
        return {room_id: entry.mailbox for room_id, entry in self._rooms.items()}

    def describe(self, *, limit: int) -> dict[str, Any]:
        """The directory and up to `limit` of its rooms, for /debug/actors (reads, never changes)."""
        now = trio.current_time()
        rooms = list(self._rooms.values())
        return {
            "path": self.path,
            "kind": "directory",
            "state": "stopping" if self._stopping else "running",
            "mailbox": {"depth": self.mailbox.depth, "capacity": self._mailbox_size},
            "uptime": round(now - self.started_at, 3),
            "rooms": len(rooms),
            "children": [
                {**entry.room.describe(now), "mailbox": {"depth": entry.mailbox.depth, "capacity": self._mailbox_size}}
                for entry in rooms[:limit]
            ],
        }

    # --- RoomHost -------------------------------------------------------------

    def room_changed(self, snapshot: RoomSnapshot) -> None:
        if snapshot.room_id in self._rooms:
            self.index.upsert(snapshot)

    def member_left(self, reason: LeaveReason) -> None:
        self.departures[reason] = self.departures.get(reason, 0) + 1

    def room_closed(self, room_id: str, reason: CloseReason) -> None:
        self._rooms.pop(room_id, None)
        self.index.remove(room_id)
        self._forget_owner(room_id)
        self.closes[reason] = self.closes.get(reason, 0) + 1
