"""Simulated RTCRoom clients: each member logs in, joins, heartbeats with jitter, may churn
or crash, and leaves at the end; watchers check what the server does about crashed members.
Given several node URLs (a cluster), the clients are bound to them in turn, so the members
of one room talk to different nodes."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from roomd.loadtest.http import HttpPool, TransportError
from roomd.loadtest.stats import LoadStats

NOT_MEMBER, NO_ROOM = 5, 3
CHECK_POLL = 0.25  # seconds between two looks at a crashed member's room
HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class LoadSettings:
    base_urls: tuple[str, ...]  # one node, or several nodes of a cluster that each answer for any room
    kind: str = "multi_room"
    prefix: str = "/weapp"
    rooms: int = 10
    members: int = 4
    duration: float = 60.0
    heartbeat: float = 5.0  # seconds between a member's heartbeats
    jitter: float = 0.2  # +/- this fraction of `heartbeat`
    heartbeat_timeout: float = 20.0  # the server's, for the eviction checks
    tolerance: float = 2.0  # seconds past heartbeat_timeout a crashed member may still be seen
    churn: float = 0.0  # leave-and-rejoin events per second, across all rooms
    rejoin_after: float = 2.0
    crash_fraction: float = 0.0  # share of non-creator members that stop heartbeating without leaving
    token: bool = False
    connections: int = 32
    ramp: float = 5.0  # seconds over which the rooms are started
    seed: int | None = None
    audiences: int = 0  # viewers per room (add_audience once the room exists, delete_audience at the end)

    def __post_init__(self) -> None:
        if not self.base_urls:
            raise ValueError("roomd-load needs at least one base URL")


class Session:
    """One node's HTTP pool, shared by the simulated clients bound to that node; records what each call got."""

    def __init__(self, settings: LoadSettings, url: str, http: HttpPool, stats: LoadStats) -> None:
        self.settings = settings
        self.url = url
        self.http = http
        self.stats = stats

    async def call(
        self, endpoint: str, body: dict[str, Any], auth: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        return (await self.timed_call(endpoint, body, auth))[0]

    async def timed_call(
        self, endpoint: str, body: dict[str, Any], auth: dict[str, str] | None = None
    ) -> tuple[dict[str, Any] | None, float]:
        """The reply (None on a transport failure) and when the request went out on the wire."""
        path = f"{self.settings.prefix}/{self.settings.kind}/{endpoint}"
        started = trio.current_time()
        try:
            _, reply, seconds = await self.http.post_json(path, body, auth)
        except TransportError as error:
            now = trio.current_time()
            self.stats.record(endpoint, self.url, now - started, "transport", at=now - self.stats.clock_zero)
            self.stats.transport_errors.append(f"{self.url} {endpoint}: {error}")
            return None, started
        at = trio.current_time() - self.stats.clock_zero
        missing = [name for name in self._expected(endpoint) if not isinstance(reply.get(name), str)]
        if reply.get("code") == 0 and missing:  # a success the driver could not go on from
            self.stats.record(endpoint, self.url, seconds, "malformed", at=at)
            self.stats.transport_errors.append(f"{self.url} {endpoint}: code 0 without {', '.join(missing)}")
            return None, started
        self.stats.record(endpoint, self.url, seconds, str(reply.get("code")), at=at)
        return reply, trio.current_time() - seconds

    def _expected(self, endpoint: str) -> tuple[str, ...]:
        """The string fields the driver reads from a code-0 reply of `endpoint`."""
        if endpoint == "get_im_login_info":
            return ("userID", "token") if self.settings.token else ("userID",)
        return EXPECTED_FIELDS.get(endpoint, ())


EXPECTED_FIELDS = {"get_push_url": ("pushURL",), "create_room": ("roomID",)}


@dataclass
class Room:
    index: int
    room_id: str = ""
    created: trio.Event = field(default_factory=trio.Event)
    guests: set[str] = field(default_factory=set)  # members other than the creator, while joined
    audiences: set[str] = field(default_factory=set)  # viewers that joined
    viewers: list[Audience] = field(default_factory=list)
    audiences_checked: trio.Event = field(default_factory=trio.Event)  # viewers leave only after the check


@dataclass
class Member:
    session: Session
    room: Room
    number: int
    crash_at: float | None = None  # trio time at which it stops heartbeating
    user_id: str = ""
    push_url: str = ""
    auth: dict[str, str] | None = None
    joined: bool = False
    churn_requested: bool = False
    last_heartbeat_ok: float = 0.0  # trio time of the last answered heartbeat

    @property
    def is_creator(self) -> bool:
        return self.number == 0

    @property
    def settings(self) -> LoadSettings:
        return self.session.settings

    async def run(self, end: trio.Event, nursery: trio.Nursery) -> None:
        if not await self._log_in() or not await self._join():
            return
        stats = self.session.stats
        stats.members_active += 1
        try:
            await self._heartbeat_until(end, nursery)
        finally:
            stats.members_active -= 1
        if self.crash_at is None:
            await self._leave()

    async def _log_in(self) -> bool:
        reply = await self.session.call("get_im_login_info", {"userIDPrefix": "load"})
        if not reply or reply.get("code") != 0:
            return False
        self.user_id = reply["userID"]
        if self.settings.token:
            self.auth = {"userID": self.user_id, "token": reply["token"]}
        url = await self.session.call("get_push_url", {"userID": self.user_id}, self.auth)
        if not url or url.get("code") != 0:
            return False
        self.push_url = url["pushURL"]
        return True

    def _me(self) -> dict[str, str]:
        return {"userID": self.user_id, "userName": f"load {self.user_id}", "userAvatar": "", "pushURL": self.push_url}

    async def _join(self) -> bool:
        if self.is_creator:
            reply = await self.session.call(
                "create_room", {**self._me(), "roomName": f"load room {self.room.index}"}, self.auth
            )
            if not reply or reply.get("code") != 0:
                self.room.created.set()  # nobody waits forever on a room that failed
                return False
            self.room.room_id = reply["roomID"]
            self.room.created.set()
        else:
            await self.room.created.wait()
            if not self.room.room_id:
                return False
            await self.session.call("get_pushers", {"roomID": self.room.room_id}, self.auth)
            reply = await self.session.call("add_pusher", {"roomID": self.room.room_id, **self._me()}, self.auth)
            if not reply or reply.get("code") != 0:
                return False
            self.room.guests.add(self.user_id)
        self.joined = True
        self.last_heartbeat_ok = trio.current_time()
        return True

    async def _heartbeat_until(self, end: trio.Event, nursery: trio.Nursery) -> None:
        settings = self.settings
        while not end.is_set():
            pause = settings.heartbeat * (1 + random.uniform(-settings.jitter, settings.jitter))
            with trio.move_on_after(pause):
                await end.wait()
            if end.is_set():
                return
            if self.crash_at is not None and trio.current_time() >= self.crash_at:
                self.room.guests.discard(self.user_id)  # gone for good, as far as the creator's leaving goes
                nursery.start_soon(watch_crashed_member, self)
                return
            if self.churn_requested:
                await self._churn(end)
                continue
            reply, sent = await self.session.timed_call(
                "pusher_heartbeat", {"roomID": self.room.room_id, "userID": self.user_id}, self.auth
            )
            if reply is None:
                continue
            if reply.get("code") == 0:
                self.last_heartbeat_ok = sent
            elif reply.get("code") in (NOT_MEMBER, NO_ROOM):
                self.session.stats.checks.wrong_evictions.append(
                    f"{self.user_id} in {self.room.room_id}: heartbeat answered {reply.get('code')} "
                    f"{trio.current_time() - self.last_heartbeat_ok:.1f} s after the last good one"
                )
                return

    async def _churn(self, end: trio.Event) -> None:
        self.churn_requested = False
        room_id = self.room.room_id
        await self.session.call("delete_pusher", {"roomID": room_id, "userID": self.user_id}, self.auth)
        self.joined = False
        self.room.guests.discard(self.user_id)
        with trio.move_on_after(self.settings.rejoin_after):
            await end.wait()
        if end.is_set():
            return
        await self.session.call("get_pushers", {"roomID": room_id}, self.auth)
        reply = await self.session.call("add_pusher", {"roomID": room_id, **self._me()}, self.auth)
        if reply is not None and reply.get("code") != 0:
            self.session.stats.checks.wrong_evictions.append(
                f"{self.user_id} could not rejoin {room_id}: add_pusher answered {reply.get('code')}"
            )
        else:
            self.joined = True
            self.room.guests.add(self.user_id)
        self.last_heartbeat_ok = trio.current_time()
        self.session.stats.churned += 1

    async def _leave(self) -> None:
        if not self.joined:
            return
        if self.is_creator:  # the creator leaving closes the room: let the others leave first
            with trio.move_on_after(self.settings.heartbeat_timeout):
                while self.room.guests:  # noqa: ASYNC110 -- a plain set that four sites update; polling is simpler
                    await trio.sleep(0.05)
        await self.session.call("delete_pusher", {"roomID": self.room.room_id, "userID": self.user_id}, self.auth)
        self.room.guests.discard(self.user_id)


@dataclass
class Audience:
    """A viewer: joins its room's audience once the room exists, leaves at the end. The first
    of each room checks, just before the end, that get_audiences lists exactly the room's."""

    session: Session
    room: Room
    number: int
    user_id: str = ""
    auth: dict[str, str] | None = None

    async def run(self, end: trio.Event) -> None:
        settings, stats = self.session.settings, self.session.stats
        reply = await self.session.call("get_im_login_info", {"userIDPrefix": "viewer"})
        if not reply or reply.get("code") != 0:
            return
        self.user_id = reply["userID"]
        if settings.token:
            self.auth = {"userID": self.user_id, "token": reply["token"]}
        await self.room.created.wait()  # set also when the room could not be made
        if not self.room.room_id:
            return
        info = json.dumps({"userName": f"viewer {self.number}", "userAvatar": ""})
        joined = await self.session.call(
            "add_audience", {"roomID": self.room.room_id, "userID": self.user_id, "userInfo": info}, self.auth
        )
        if not joined or joined.get("code") != 0:
            return
        self.room.audiences.add(self.user_id)
        await end.wait()
        if self.number == 0:
            listed = await self.session.call("get_audiences", {"roomID": self.room.room_id}, self.auth)
            if listed and listed.get("code") == 0:
                ids = {a["userID"] for a in listed.get("audiences", [])}
                exact = ids == self.room.audiences and listed.get("audienceCount") == len(ids)
                stats.audience_checks.append(exact)
            self.room.audiences_checked.set()
        else:
            with trio.move_on_after(settings.heartbeat_timeout):
                await self.room.audiences_checked.wait()
        await self.session.call("delete_audience", {"roomID": self.room.room_id, "userID": self.user_id}, self.auth)


async def watch_crashed_member(member: Member) -> None:
    """Look at the member's room until it is gone; judge when that was."""
    settings, checks = member.settings, member.session.stats.checks
    checks.crashed += 1
    due = member.last_heartbeat_ok + settings.heartbeat_timeout
    give_up = due + settings.tolerance * 3 + 2
    while trio.current_time() < give_up:
        reply = await member.session.call("get_pushers", {"roomID": member.room.room_id}, member.auth)
        if reply is not None:
            present = reply.get("code") == 0 and any(p["userID"] == member.user_id for p in reply.get("pushers", []))
            if not present:
                lateness = trio.current_time() - due
                checks.lateness.append(lateness)
                if lateness <= settings.tolerance:
                    checks.evicted_in_time += 1
                else:
                    checks.evicted_late.append(lateness)
                return
        await trio.sleep(CHECK_POLL)
    checks.never_evicted += 1


async def churn_driver(members: list[Member], settings: LoadSettings, end: trio.Event) -> None:
    if settings.churn <= 0:
        return
    while not end.is_set():
        with trio.move_on_after(random.expovariate(settings.churn)):
            await end.wait()
        eligible = [
            m for m in members if m.joined and not m.is_creator and m.crash_at is None and not m.churn_requested
        ]
        if eligible and not end.is_set():
            random.choice(eligible).churn_requested = True


def shortest_run_with_crashes(settings: LoadSettings) -> float:
    """The shortest --duration in which members can crash and be seen evicted before the end."""
    return settings.ramp + settings.heartbeat + settings.heartbeat_timeout + settings.tolerance * 3 + 2


def plan_members(sessions: Sequence[Session], settings: LoadSettings, start: float) -> list[Member]:
    """Every member of every room, each client (member or viewer) bound to the next node in
    turn; crashed ones get the time they stop heartbeating."""
    nodes = itertools.cycle(sessions)
    members: list[Member] = []
    rooms = [Room(i) for i in range(settings.rooms)]
    for room in rooms:
        members.extend(Member(next(nodes), room, n) for n in range(settings.members))
        room.viewers = [Audience(next(nodes), room, n) for n in range(settings.audiences)]
    candidates = [m for m in members if not m.is_creator]
    latest_crash = settings.duration - settings.heartbeat_timeout - settings.tolerance * 3 - 2
    earliest_crash = settings.ramp + settings.heartbeat
    if settings.crash_fraction > 0 and latest_crash > earliest_crash:
        for member in random.sample(candidates, round(len(candidates) * settings.crash_fraction)):
            member.crash_at = start + random.uniform(earliest_crash, latest_crash)
    return members


def pool_sizes(connections: int, nodes: int) -> list[int]:
    """The connection budget split over the nodes, at least one connection each."""
    return [max(1, connections // nodes + (i < connections % nodes)) for i in range(nodes)]


@asynccontextmanager
async def node_sessions(settings: LoadSettings, stats: LoadStats) -> AsyncIterator[list[Session]]:
    """One session, with its own connection pool, per base URL."""
    urls = settings.base_urls
    sizes = pool_sizes(settings.connections, len(urls))
    pools = [HttpPool(url, size=size, timeout=HTTP_TIMEOUT) for url, size in zip(urls, sizes, strict=True)]
    stats.add_nodes(urls)
    try:
        yield [Session(settings, url, pool, stats) for url, pool in zip(urls, pools, strict=True)]
    finally:
        for pool in pools:
            await pool.aclose()


async def run_load(settings: LoadSettings, stats: LoadStats, *, started: trio.Event | None = None) -> float:
    """Drive the load for settings.duration seconds; returns the elapsed time."""
    if settings.seed is not None:
        random.seed(settings.seed)
    async with node_sessions(settings, stats) as sessions:
        start = stats.clock_zero = trio.current_time()
        members = plan_members(sessions, settings, start)
        end = trio.Event()
        if started is not None:
            started.set()
        async with trio.open_nursery() as watchers, trio.open_nursery() as nursery:
            for member in members:
                if member.is_creator and settings.rooms > 1:
                    await trio.sleep(settings.ramp / settings.rooms)
                nursery.start_soon(member.run, end, watchers)
                if member.is_creator:
                    for viewer in member.room.viewers:
                        nursery.start_soon(viewer.run, end)
            nursery.start_soon(churn_driver, members, settings, end)
            await trio.sleep_until(start + settings.duration)
            end.set()
        return trio.current_time() - start
