"""Heartbeats relayed, not forwarded: a node answers heartbeats for rooms another node owns.

Heartbeats are most of the traffic and change nothing but a deadline, so a
node that does not own the room answers them itself, from a view of the
room's members that the owner keeps current, and sends the heartbeats on
to the owner in one batch per owner every `relay_interval`.

- The first heartbeat of a room on a node (no view yet) is forwarded like
  any call; when the owner answers it, this node asks to watch the room
  (`WatchMembers`): the owner answers with the members and pushes
  `MembersKnown` on every change of them, and an empty one when the room
  closes or leaves that node.
- A view is trusted for `VIEW_TTL` seconds from when it came (at most a
  quarter of the kind's heartbeat_timeout); then the next heartbeat is
  forwarded again and the watch renewed, so a push that was lost (a
  broken link) costs at most that long. An owner that is sent heartbeats
  of a room it no longer runs says so, and the view goes at once.
- Residual window, stated in the README: a heartbeat answered here in the
  instant the owner evicts that member (before its push arrives) is
  answered 0 although the member is gone; its next heartbeat gets 5. And
  a heartbeat relayed reaches the owner up to `relay_interval` plus a link
  round trip later than it was answered.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from loguru import logger

from roomd.actors.messages import (
    Heartbeats,
    MembersKnown,
    RelayedHeartbeats,
    RoomChanged,
    RoomClosed,
    RoomReport,
    WatchMembers,
)
from roomd.actors.replies import Ok

if TYPE_CHECKING:
    from roomd.cluster.router import ClusterRouter

VIEW_TTL = 10.0  # seconds a pushed view of a room's members is trusted
MAX_VIEWS = 200_000  # rooms viewed at once; beyond it the views start over
MAX_BATCH = 5_000  # heartbeats per relayed batch
PUSH_TIMEOUT = 2.0  # seconds for a push of members to a watcher


@dataclass(slots=True)
class _View:
    owner: str
    user_ids: frozenset[str]
    until: float


class HeartbeatRelay:
    def __init__(self, router: ClusterRouter, *, interval: float) -> None:
        self._router = router
        self.interval = interval
        self._views: dict[tuple[str, str], _View] = {}
        self._queued: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self._watchers: dict[tuple[str, str], set[str]] = {}  # rooms owned here -> nodes watching them
        self._nursery: trio.Nursery | None = None
        self.relayed = 0
        self.log = logger.bind(actor="root/cluster/relay")

    async def run(self, *, task_status: trio.TaskStatus[HeartbeatRelay] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            while True:
                await trio.sleep(self.interval)
                self._flush()

    # --- on the node that answers -----------------------------------------------------------

    def knows(self, kind: str, room_id: str, user_id: str) -> str | None:
        """The owner of the room when it said, recently, that `user_id` is a member."""
        view = self._views.get((kind, room_id))
        if view is None or user_id not in view.user_ids or trio.current_time() >= view.until:
            return None
        return view.owner

    def answer(self, kind: str, room_id: str, user_id: str) -> Ok[None] | None:
        """Ok when the owner said `user_id` is a member of the room (the heartbeat is queued for
        the owner); None when this node does not know, and the heartbeat must go to the owner."""
        owner = self.knows(kind, room_id, user_id)
        if owner is None:
            return None
        self._queued[owner].append((kind, room_id, user_id))
        self.relayed += 1
        return Ok(None)

    async def watch(self, owner: str, kind: str, room_id: str, *, deadline: float) -> None:
        """After a heartbeat the owner answered: watch the room's members, unless already."""
        key = (kind, room_id)
        view = self._views.get(key)
        if view is not None and view.owner == owner and trio.current_time() < view.until:
            return
        me = self._router.lease.owner
        reply = await self._router.peers.call(owner, WatchMembers(kind, room_id, me), deadline=deadline)
        if isinstance(reply, MembersKnown) and reply.owner == owner:
            self._view(owner, reply)

    def _view(self, owner: str, known: MembersKnown) -> None:
        key = (known.kind, known.room_id)
        if not known.user_ids:
            self._views.pop(key, None)
            return
        if len(self._views) >= MAX_VIEWS and key not in self._views:
            self._views.clear()
        directory = self._router.local.directory(known.kind)
        trusted = min(VIEW_TTL, directory.kind.heartbeat_timeout / 4) if directory is not None else 0.0
        self._views[key] = _View(owner, frozenset(known.user_ids), trio.current_time() + trusted)

    def _flush(self) -> None:
        queued, self._queued = self._queued, defaultdict(list)
        assert self._nursery is not None
        for owner, beats in queued.items():
            for start in range(0, len(beats), MAX_BATCH):
                batch = RelayedHeartbeats(tuple(beats[start : start + MAX_BATCH]))
                self._nursery.start_soon(self._send, owner, batch)

    async def _send(self, owner: str, batch: RelayedHeartbeats) -> None:
        reply = await self._router.peers.call(owner, batch, deadline=trio.current_time() + PUSH_TIMEOUT)
        if not isinstance(reply, Ok):  # the owner is gone or unreachable: trust nothing it said
            self.forget_owner(owner)
            return
        for kind, room_id in reply.value if isinstance(reply.value, tuple) else ():
            view = self._views.get((kind, room_id))
            if view is not None and view.owner == owner:  # it runs that room no more
                del self._views[(kind, room_id)]

    def forget_owner(self, owner: str) -> None:
        for key in [key for key, view in self._views.items() if view.owner == owner]:
            del self._views[key]
        for watchers in self._watchers.values():
            watchers.discard(owner)

    def forget_all(self, owner: str) -> None:
        """This node held its rooms as `owner` and holds them no more: tell their watchers."""
        self._views.clear()
        self._queued.clear()
        for key in list(self._watchers):
            self._push_members(key, (), owner)
        self._watchers.clear()

    # --- on the owner ----------------------------------------------------------------------------

    async def serve(self, payload: Any) -> Any:
        match payload:
            case RelayedHeartbeats(beats):
                by_room: dict[tuple[str, str], list[str]] = defaultdict(list)
                for kind, room_id, user_id in beats:
                    by_room[(kind, room_id)].append(user_id)
                deadline = trio.current_time() + PUSH_TIMEOUT
                not_here: list[tuple[str, str]] = []
                for (kind, room_id), user_ids in by_room.items():
                    directory = self._router.local.directory(kind)
                    if directory is not None and self._router.runs_here(kind, room_id):
                        await directory.call_room(room_id, Heartbeats(tuple(user_ids)), deadline=deadline)
                    else:
                        not_here.append((kind, room_id))
                return Ok(tuple(not_here))
            case WatchMembers(kind, room_id, watcher):
                directory = self._router.local.directory(kind)
                me = self._router.lease.owner
                found = directory.snapshot_of(room_id) if directory is not None else None
                if found is None or not self._router.runs_here(kind, room_id):
                    return MembersKnown(kind, room_id, (), me)
                self._watchers.setdefault((kind, room_id), set()).add(watcher)
                return MembersKnown(kind, room_id, tuple(m.user_id for m in found.members), me)
            case MembersKnown(kind, room_id, _, owner):
                view = self._views.get((kind, room_id))
                if view is not None and view.owner == owner:  # never a late word from an earlier owner
                    self._view(owner, payload)
                return Ok(None)
        return None

    def observe(self, kind: str, report: RoomReport) -> None:
        """A room owned here changed: push its members to the nodes that watch it."""
        match report:
            case RoomChanged(snapshot):
                key = (kind, snapshot.room_id)
                if key in self._watchers:
                    self._push_members(key, tuple(m.user_id for m in snapshot.members))
            case RoomClosed(room_id, _):
                key = (kind, room_id)
                if key in self._watchers:
                    self._push_members(key, ())
                    del self._watchers[key]

    def _push_members(self, key: tuple[str, str], user_ids: tuple[str, ...], owner: str | None = None) -> None:
        if self._nursery is None:
            return
        known = MembersKnown(key[0], key[1], user_ids, owner if owner is not None else self._router.lease.owner)
        for watcher in self._watchers.get(key, ()):
            self._nursery.start_soon(self._push, watcher, known)

    async def _push(self, watcher: str, known: MembersKnown) -> None:
        await self._router.peers.call(watcher, known, deadline=trio.current_time() + PUSH_TIMEOUT)
