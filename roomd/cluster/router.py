"""The cluster router: any node answers for any room, the room's owner decides.

`ClusterRouter` wraps the node's `LocalRouter`. A room this node runs is
called in process, as with one node. Any other room is looked up in Redis
(cached) and its call forwarded over the link to its owner; an owner that
no longer runs the room answers `Moved`, and the call is sent once more to
whoever Redis names then. Creations claim the roomID in Redis first (one
script: the roomID is unique across nodes, code 11), then make the room
here; a join-creation of a roomID another node holds is sent to that node.
The listing is read from Redis (one script call, O(page)), so every node
pages through the same rooms in the same global creation order.

Heartbeats of rooms owned elsewhere are relayed (relay.py): answered here
from the members the owner said it has, and sent on in batches.

Takeover: every `reap_interval` the node looks for owners whose lease is
gone and claims their rooms (epoch bumped, in batches), then runs them
through the directory's ordinary restore path: members on fresh deadlines,
IM groups kept. A node that loses its lease hands back every room it runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, TypeVar

import trio
from loguru import logger

from roomd.actors.ids import new_room_id
from roomd.actors.messages import (
    AdminPage,
    Ask,
    CreateRoom,
    ForwardedCall,
    ForwardedCreate,
    GetRoom,
    Heartbeat,
    MembersKnown,
    Moved,
    RelayedHeartbeats,
    RoomRemoved,
    RoomSnapshot,
    WatchMembers,
)
from roomd.actors.replies import DomainError, Ok, Refused, no_such_room
from roomd.actors.room import CHANGES
from roomd.actors.router import LocalRouter, notify_when_found, parse_cursor, unknown_kind, webhook_stats
from roomd.actors.runtime import COMMIT_WAIT
from roomd.actors.stats import RouterStats
from roomd.actors.store import SavedRoom
from roomd.actors.webhooks import WebhookSender
from roomd.cluster.lease import NodeLease
from roomd.cluster.peers import Peers, Unreachable
from roomd.cluster.redis_rooms import RedisUnavailable, RoomsInRedis
from roomd.cluster.redis_store import RedisStore
from roomd.cluster.relay import HeartbeatRelay

R = TypeVar("R")
OWNER_CACHE_SIZE = 100_000  # rooms whose owner is remembered; beyond it the cache starts over
ADOPT_RETRY = 0.05  # seconds between attempts to run a room taken over that still stops here
ADOPT_PATIENCE = 5.0  # seconds after which that wait is logged
RECONCILE_EVERY = 8  # reaps between looks at the rooms Redis says this node holds


def _busy(detail: str) -> Refused:
    return Refused(DomainError.BUSY, detail)


REDIS_DOWN = "the cluster's Redis is unavailable; retry"
NO_LEASE = "this node holds no lease right now; retry"


class ClusterRouter:
    def __init__(
        self,
        local: LocalRouter,
        *,
        rooms: RoomsInRedis,
        store: RedisStore,
        lease: NodeLease,
        peers: Peers,
        call_timeout: float,
        takeover_batch: int,
        relay_interval: float,
    ) -> None:
        self.local = local
        self._rooms = rooms
        self._store = store
        self.lease = lease
        self.peers = peers
        self._call_timeout = call_timeout
        self._takeover_batch = takeover_batch
        self._owners: dict[tuple[str, str], str] = {}
        self._takeovers: dict[str, trio.Event] = {}  # dead owner -> set when its rooms are taken
        self._adopting: dict[tuple[str, str], trio.Event] = {}  # rooms claimed here, not yet running
        self._creating: set[tuple[str, str]] = set()  # rooms this node is claiming and making
        self._nursery: trio.Nursery | None = None
        self.relay = HeartbeatRelay(self, interval=relay_interval)
        self.webhooks: WebhookSender | None = None  # set when webhooks are configured
        self.forwarded = 0
        self.served_for_peers = 0
        self.moved_retries = 0
        self.takeovers = 0
        self.log = logger.bind(actor="root/cluster")

    # --- RoomRouter ------------------------------------------------------------------------

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.local.kinds

    @property
    def ready(self) -> str | None:
        if not self.lease.owner:
            return "this node holds no lease in Redis"
        if self.lease.redis_down or not self.lease.held:
            return "this node cannot reach Redis"
        return None

    async def create_room(self, kind: str, request: CreateRoom, *, deadline: float) -> Ok[str] | Refused:
        if self.local.directory(kind) is None:
            return unknown_kind(kind)
        owner = self.lease.owner
        if not owner or not self.lease.serving:
            return _busy(NO_LEASE)
        while True:
            room_id = request.room_id or new_room_id()
            key = (kind, room_id)
            self._creating.add(key)  # a claim of it may be pending in Redis: the reconciler leaves it
            try:
                result = await self._claim_and_create(kind, room_id, request, owner, deadline)
            finally:
                self._creating.discard(key)
            if result is not None:
                return result

    async def _claim_and_create(
        self, kind: str, room_id: str, request: CreateRoom, owner: str, deadline: float
    ) -> Ok[str] | Refused | None:
        """Claim `room_id` and make the room here; None when a roomID made here was taken (try another)."""
        try:
            with trio.move_on_at(deadline):
                status, found = await self._rooms.claim(owner, kind, room_id)
            if trio.current_time() >= deadline:
                return _busy("no answer from Redis by the deadline")
        except RedisUnavailable:
            return _busy(REDIS_DOWN)  # a claim made all the same is removed by the reconciler
        if status == -1:
            return _busy(NO_LEASE)
        if status == 2:
            return _busy(f"room {room_id} is closing; retry shortly")
        if status == 0:
            if request.join_if_exists and request.room_id is not None:
                return await self._join_elsewhere(kind, request, found, deadline)
            if request.room_id is not None:
                return Refused(DomainError.ROOM_EXISTS, f"room {room_id} already exists")
            return None
        epoch = int(found)
        self._store.hold(kind, room_id, epoch)
        self._owners[(kind, room_id)] = owner
        made = await self.local.create_room(kind, dataclasses.replace(request, room_id=room_id), deadline=deadline)
        if isinstance(made, Refused):
            try:
                with trio.CancelScope(shield=True), trio.move_on_after(self._rooms.timeout):
                    await self._rooms.release(owner, kind, room_id, epoch)
            except RedisUnavailable:
                pass  # a claim left pending is removed by the reconciler
            self._store.drop(kind, room_id)  # what the directory wrote meanwhile kept its epoch
        return made

    async def _join_elsewhere(self, kind: str, request: CreateRoom, owner: str, deadline: float) -> Ok[str] | Refused:
        """add_pusher on a roomID that was made meanwhile, maybe on another node: its node joins the member."""
        assert request.room_id is not None
        if owner == self.lease.owner:
            await self._adopted(kind, request.room_id, deadline)
            if not self.runs_here(kind, request.room_id):
                return _busy(f"room {request.room_id} is moving between nodes; retry")
            return await self.local.create_room(kind, request, deadline=deadline)
        self.forwarded += 1
        time_left = max(0.0, deadline - trio.current_time())
        call = ForwardedCreate(kind, request, time_left)
        reply = await self.peers.call(owner, call, deadline=deadline + COMMIT_WAIT)
        if isinstance(reply, Moved):
            return _busy(f"room {request.room_id} is moving between nodes; retry")
        return reply  # type: ignore[no-any-return]

    def runs_here(self, kind: str, room_id: str) -> bool:
        """Whether this node may answer for the room now: it runs it under its current lease."""
        directory = self.local.directory(kind)
        return (
            directory is not None
            and directory.holds(room_id)
            and (kind, room_id) in self._store.epochs
            and self.lease.serving
        )

    async def call_room(self, kind: str, room_id: str, message: Ask[R], *, deadline: float) -> R | Refused:
        if self.local.directory(kind) is None:
            return unknown_kind(kind)
        if self.runs_here(kind, room_id):
            return await self.local.call_room(kind, room_id, message, deadline=deadline)
        if isinstance(message, Heartbeat):
            relayed = self.relay.answer(kind, room_id, message.user_id)
            if relayed is not None:
                return relayed  # type: ignore[return-value]
        # a node that is not serving (just woken past its lease, say) trusts no cached owner
        owner = await self._owner_of(kind, room_id, fresh=not self.lease.serving)
        if isinstance(owner, Refused):
            return owner
        for attempt in range(2):
            if owner is None:
                return no_such_room(room_id)
            if owner == self.lease.owner:
                if not self.lease.serving:
                    return _busy(NO_LEASE)
                await self._adopted(kind, room_id, deadline)
                return await self.local.call_room(kind, room_id, message, deadline=deadline)
            self.forwarded += 1
            time_left = max(0.0, deadline - trio.current_time())
            call = ForwardedCall(kind, room_id, message, time_left)  # type: ignore[arg-type]  # an Ask is a RoomMessage
            # a change the owner has begun to write is answered with its outcome, as in one process
            waiting = deadline + COMMIT_WAIT if isinstance(message, CHANGES) else deadline
            reply = await self.peers.call(owner, call, deadline=waiting)
            if not isinstance(reply, (Moved, Unreachable)):
                if isinstance(message, Heartbeat) and isinstance(reply, Ok):
                    await self.relay.watch(owner, kind, room_id, deadline=deadline)
                return reply  # type: ignore[no-any-return]
            if attempt == 1:
                break
            self.moved_retries += 1
            fresh = await self._owner_of(kind, room_id, fresh=True)
            if fresh == owner and await self._take_over_now(owner, deadline):
                fresh = await self._owner_of(kind, room_id, fresh=True)
            if isinstance(fresh, Refused):
                return fresh
            if fresh == owner and isinstance(reply, Unreachable):
                return Refused(reply.error, reply.detail)
            owner = fresh
        return _busy(f"room {room_id} is moving between nodes; retry")

    async def _adopted(self, kind: str, room_id: str, deadline: float) -> None:
        """Wait (until `deadline`) for a room taken over here to run, if it is on its way."""
        adopting = self._adopting.get((kind, room_id))
        if adopting is not None:
            with trio.move_on_at(deadline):
                await adopting.wait()

    async def _take_over_now(self, owner: str, deadline: float) -> bool:
        """Take the rooms of `owner` now if its lease is gone (it stopped, or died), instead of
        waiting for the reaper: True when it was gone."""
        me = self.lease.owner
        if not me or owner == me:
            return False
        try:
            with trio.move_on_at(deadline):
                if await self._rooms.address_of(owner) is not None:
                    return False
                await self._take_over(owner).wait()
                return True
        except RedisUnavailable:
            return False
        return False

    async def _owner_of(self, kind: str, room_id: str, *, fresh: bool) -> str | Refused | None:
        key = (kind, room_id)
        if not fresh and key in self._owners:
            return self._owners[key]
        try:
            owner = await self._rooms.owner_of(kind, room_id)
        except RedisUnavailable:
            return _busy(REDIS_DOWN)
        if owner is None:
            self._owners.pop(key, None)
            return None
        if len(self._owners) >= OWNER_CACHE_SIZE:
            self._owners.clear()
        self._owners[key] = owner
        return owner

    async def page(self, kind: str, index: int, count: int) -> list[RoomSnapshot] | Refused:
        if self.local.directory(kind) is None:
            return []
        try:
            return await self._rooms.page(kind, index, count)
        except RedisUnavailable:
            return _busy(REDIS_DOWN)

    async def admin_rooms(self, kind: str, *, state: str | None, cursor: str, limit: int) -> AdminPage | Refused:
        if self.local.directory(kind) is None:
            return unknown_kind(kind)
        after = parse_cursor(cursor)
        if after is None:
            return Refused(DomainError.INVALID, "cursor is not one this server gave")
        try:
            return await self._rooms.admin_page(kind, after=after, limit=limit, state=state)
        except RedisUnavailable:
            return _busy(REDIS_DOWN)

    async def send_notification(self, kind: str, room_id: str, content: str, *, deadline: float) -> Ok[None] | Refused:
        found = await self.call_room(kind, room_id, GetRoom(), deadline=deadline)
        return notify_when_found(found, self.local.im, room_id, content)

    def im_group_state(self, room_id: str) -> dict[str, object]:
        return self.local.im_group_state(room_id)

    def recent_closes(self) -> list[tuple[float, str, str, str]]:
        return self.local.recent_closes()  # of the rooms this node ran

    def stats(self) -> RouterStats:
        local = self.local.stats()
        peers = self.peers
        cluster = {
            "roomd_cluster_forwarded": float(self.forwarded),
            "roomd_cluster_served_for_peers": float(self.served_for_peers),
            "roomd_cluster_relayed_heartbeats": float(self.relay.relayed),
            "roomd_cluster_moved_retries": float(self.moved_retries),
            "roomd_cluster_link_round_trip_seconds": peers.round_trip_total / peers.calls if peers.calls else 0.0,
            "roomd_cluster_lease_renew_failures": float(self.lease.renew_failures),
            "roomd_cluster_leases_taken": float(self.lease.leases_taken),
            "roomd_cluster_takeovers": float(self.takeovers),
            "roomd_cluster_fenced_writes": float(self._store.fenced_writes),
            "roomd_cluster_rooms_owned": float(sum(s.waiting_rooms + s.active_rooms for s in local.kinds.values())),
            "roomd_cluster_peers": float(len(peers.connected)),
            "roomd_cluster_redis_up": 0.0 if self.lease.redis_down else 1.0,
        }
        webhooks = webhook_stats(self.webhooks) if self.webhooks is not None else {}
        return dataclasses.replace(local, cluster=cluster, webhooks=webhooks)

    async def describe(self, *, limit: int) -> list[dict[str, Any]]:
        me = self.lease.owner
        connected = set(self.peers.connected)
        try:
            live = await self._rooms.live_owners()
            peers: list[dict[str, Any]] | str = [
                {"owner": owner, "link": address, "connected": owner in connected}
                for owner, address in sorted(live.items())
                if owner != me
            ]
        except RedisUnavailable:
            peers = "unknown: Redis is unavailable"
        node = {
            "path": "root/cluster",
            "kind": "cluster node",
            "state": "serving" if self.lease.serving else "not serving",
            "node": self.lease.name,
            "owner": me,
            "link": self.lease.address,
            "redis": "down" if self.lease.redis_down else "up",
            "peers": peers,
            "owned_rooms": {
                kind: directory.room_ids()[:limit]
                for kind in self.local.kinds
                if (directory := self.local.directory(kind)) is not None
            },
        }
        return [node, *await self.local.describe(limit=limit)]

    # --- what other nodes ask ------------------------------------------------------------------

    async def serve_peer(self, payload: Any) -> Any:
        """The link server's handler: answer a call another node sent here."""
        match payload:
            case ForwardedCall(kind, room_id, message, time_left):
                deadline = trio.current_time() + min(max(time_left, 0.0), self._call_timeout)
                await self._adopted(kind, room_id, deadline)
                if not self.runs_here(kind, room_id):
                    return Moved(room_id)
                self.served_for_peers += 1
                return await self.local.call_room(kind, room_id, message, deadline=deadline)
            case ForwardedCreate(kind, request, time_left):
                deadline = trio.current_time() + min(max(time_left, 0.0), self._call_timeout)
                if request.room_id is not None:
                    await self._adopted(kind, request.room_id, deadline)
                if request.room_id is None or not self.runs_here(kind, request.room_id):
                    return Moved(request.room_id or "")
                self.served_for_peers += 1
                return await self.local.create_room(kind, request, deadline=deadline)
            case RelayedHeartbeats() | WatchMembers() | MembersKnown():
                return await self.relay.serve(payload)
        return Refused(DomainError.INVALID, f"a node cannot answer {type(payload).__name__}")

    # --- ownership changing hands ---------------------------------------------------------------

    async def drain(self) -> None:
        """Give the lease up, then stop running rooms here: the other nodes take them at once."""
        owner = self.lease.owner
        await self.lease.resign()
        if owner:
            self._hand_back(owner, "this node is stopping")

    def _hand_back(self, owner: str, why: str) -> int:
        released = 0
        for kind in self.local.kinds:
            directory = self.local.directory(kind)
            if directory is None:
                continue
            for room_id in directory.room_ids():
                directory.release(room_id, why)
                released += 1
        self._store.epochs.clear()  # rooms closing here too: whoever takes them next finishes that
        self._owners.clear()
        self.relay.forget_all(owner)
        return released

    def lease_lost(self, owner: str) -> None:
        """Hand back every room: other nodes (or this one, under its next lease) take them over."""
        released = self._hand_back(owner, f"the lease of {owner} was lost")
        self.log.warning("lease lost owner={}: {} rooms handed back", owner, released)

    def room_fenced(self, kind: str, room_id: str) -> None:
        """A write was refused: another node holds the room now."""
        directory = self.local.directory(kind)
        if directory is not None:
            directory.release(room_id, "another node holds it now (a write was fenced)")
        self._owners.pop((kind, room_id), None)

    async def run(self, reap_interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: take over the rooms of every owner whose lease is gone, and now and then make
        sure every room Redis says this node holds runs here."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            for tick in itertools.count():
                await trio.sleep(reap_interval)
                owner = self.lease.owner
                if not owner or not self.lease.held:
                    continue
                try:
                    owners = await self._rooms.owners()
                    live = await self._rooms.live_owners()
                    for dead in owners:
                        if dead not in live and dead != owner:
                            await self._take_over(dead).wait()
                    if tick % RECONCILE_EVERY == 0:
                        await self._reconcile(owner)
                except RedisUnavailable:
                    continue

    async def _reconcile(self, owner: str) -> None:
        """Run every room Redis says `owner` holds that runs nowhere here (a takeover whose load
        failed, a claim or a creation whose reply was lost): open ones are restored, the rest closed."""
        for kind, room_id in await self._rooms.owned(owner):
            key = (kind, room_id)
            if key in self._store.epochs or key in self._creating or key in self._adopting:
                continue  # runs here, is closing here, or is on its way
            stored = await self._rooms.load(kind, room_id)
            if stored is None or stored.owner != owner or self.lease.owner != owner:
                continue
            self.log.warning(
                "room held in Redis but run nowhere; running it here room={} state={}", room_id, stored.state
            )
            self._adopting[key] = trio.Event()
            await self._adopt(kind, room_id, stored.epoch)

    def _take_over(self, dead: str) -> trio.Event:
        """Start taking the rooms of `dead` (unless already under way); the event is set once done.
        A takeover runs to its end whoever waits for it: rooms claimed in Redis always run here."""
        running = self._takeovers.get(dead)
        if running is not None:
            return running
        done = self._takeovers[dead] = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._take_all_of, dead, done)
        return done

    async def _take_all_of(self, dead: str, done: trio.Event) -> None:
        started = trio.current_time()
        total = 0
        self.peers.forget(dead)
        self.relay.forget_owner(dead)
        try:
            while self.lease.owner:
                try:
                    taken = await self._rooms.take_over(dead, self.lease.owner, self._takeover_batch)
                except RedisUnavailable as error:
                    self.log.warning("takeover of {} paused: Redis unavailable ({})", dead, error)
                    return
                if not taken:
                    break
                for kind, room_id, _ in taken:
                    self._adopting.setdefault((kind, room_id), trio.Event())
                async with trio.open_nursery() as loading:
                    for kind, room_id, epoch in taken:
                        loading.start_soon(self._adopt, kind, room_id, epoch)
                total += len(taken)
        finally:
            del self._takeovers[dead]
            done.set()
            if total:
                self.takeovers += total
                self.log.info("took over rooms={} from={} in {:.3f}s", total, dead, trio.current_time() - started)

    async def _adopt(self, kind: str, room_id: str, epoch: int) -> None:
        try:
            await self._run_taken_room(kind, room_id, epoch)
        finally:
            adopting = self._adopting.pop((kind, room_id), None)
            if adopting is not None:
                adopting.set()

    async def _run_taken_room(self, kind: str, room_id: str, epoch: int) -> None:
        owner = self.lease.owner
        directory = self.local.directory(kind)
        try:
            stored = await self._rooms.load(kind, room_id)
        except RedisUnavailable as error:
            self.log.warning("room taken over but not loaded room={} ({}); the reconciler runs it", room_id, error)
            return
        if directory is None or stored is None or stored.owner != owner or stored.epoch != epoch:
            return
        saved = SavedRoom(
            stored.room_id,
            stored.creator,
            stored.room_info,
            stored.members,
            closing=stored.state != "open",
            audiences=stored.audiences,
            custom=stored.custom,
        )
        if stored.state != "open":  # nothing runs: its IM group goes, then the room
            self._store.hold(kind, room_id, epoch)
            if stored.state == "pending":  # claimed, never made: its creator was never told it exists
                self.log.info("room claimed but never made; removing it room={}", room_id)
                self._store.write_later([RoomRemoved(kind, room_id)], about=f"root/{kind}/{room_id}")
        waited = 0.0
        while not directory.adopt(saved):  # this node still stops an earlier instance of the room
            if self.lease.owner != owner:
                return  # the lease was lost meanwhile: the room goes to whoever takes it next
            if waited >= ADOPT_PATIENCE:
                self.log.warning("room taken over waits for its earlier instance to stop room={}", room_id)
                waited = -math.inf
            await trio.sleep(ADOPT_RETRY)
            waited += ADOPT_RETRY
        # an open room is held from the moment it runs (it writes nothing before): an earlier
        # instance, still stopping meanwhile, could not write under this epoch
        self._store.hold(kind, room_id, epoch)
        self._owners[(kind, room_id)] = owner
