"""One directory per room kind: roomID -> room, room creation, and listing summaries.

The directory is the only place that knows where a room lives. Creation is
serialised through its mailbox: a roomID is reserved the moment the
request is read, so two creations of one roomID give one room. Requests
for a room are routed straight to the room's own mailbox; listings are
answered from the `RoomIndex` and never message a room.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio
from loguru import logger

from roomd.actors.ids import new_room_id
from roomd.actors.messages import CloseReason, CreateRoom, LeaveReason, RoomMessage, RoomSnapshot
from roomd.actors.ports import ChangeStore, ImPort
from roomd.actors.replies import DomainError, Ok, Refused, no_such_room
from roomd.actors.room import Room
from roomd.actors.room_index import RoomIndex
from roomd.actors.runtime import GONE, Envelope, Mailbox, open_mailbox, refuse_pending, supervised
from roomd.actors.store import Change, RoomSaved, SavedRoom
from roomd.config import KindSettings


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
        self._stopping = False
        self._nursery: trio.Nursery | None = None
        self.mailbox, self._inbox = open_mailbox(f"directory {kind_name}", mailbox_size)
        self.log = logger.bind(actor=path)

    # --- the actor loop -----------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Directory] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve creations until the mailbox is closed, then close every room."""
        self.log.info(
            "directory started max_members={} heartbeat_timeout={:g}s max_idle_duration={:g}s",
            self.kind.max_members, self.kind.heartbeat_timeout, self.kind.max_idle_duration,
        )
        async with self._inbox, trio.open_nursery() as nursery:
            self._nursery = nursery
            for saved in self._store.load(self.kind_name):
                self._restore_room(saved)
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
        while room_id is None or room_id in self._rooms or room_id in self._pending:
            room_id = new_room_id()
        self._pending.add(room_id)
        assert self._nursery is not None
        self._nursery.start_soon(self._finish_create, room_id, envelope)

    async def _finish_create(self, room_id: str, envelope: Envelope[Any]) -> None:
        request: CreateRoom = envelope.message
        try:
            refusal = await self._im.create_group(room_id, request.room_info)
            if refusal is not None:
                self.log.warning("room not created room={} because {}", room_id, refusal.detail)
                envelope.answer(refusal)
                return
            if self._stopping:
                self._im.destroy_group(room_id)
                envelope.answer(Refused(DomainError.BUSY, "the server is shutting down"))
                return
            self._start_room(room_id, request, envelope)
        finally:
            self._pending.discard(room_id)

    def _new_room(self, room_id: str, creator: str, room_info: str) -> Room:
        room = Room(
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
        mailbox, inbox = open_mailbox(f"room {room_id}", self._mailbox_size)
        self._rooms[room_id] = _RoomEntry(mailbox, room)
        assert self._nursery is not None
        self._nursery.start_soon(room.run, inbox, name=f"room {room_id}")
        return room

    def _start_room(self, room_id: str, request: CreateRoom, envelope: Envelope[Any]) -> None:
        """Start the room; the creator is answered once the room is durable."""
        room = self._new_room(room_id, request.creator, request.room_info)
        self.index.upsert(room.snapshot())
        self.log.info(
            "room created room={} creator={} with_first_member={}",
            room_id, request.creator, request.first_member is not None,
        )
        if request.first_member is not None:
            room.join(request.first_member)
        changes: list[Change] = [RoomSaved(self.kind_name, room_id, request.creator, request.room_info)]
        self._store.commit([*changes, *room.take_changes()], envelope.reply, Ok(room_id))

    def _restore_room(self, saved: SavedRoom) -> None:
        room = self._new_room(saved.room_id, saved.creator, saved.room_info)
        room.restore(saved.members)
        self.index.upsert(room.snapshot())

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
        self.closes[reason] = self.closes.get(reason, 0) + 1
