"""Model-based: random sequences of creates, joins, leaves, heartbeats, time, destroys and restarts
give the room actor the same observable state as a plain-Python model of SPEC §3."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomd.actors.directory import Directory
from roomd.actors.messages import CreateRoom, Destroy, GetRoom, Heartbeat, Join, Leave
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.store import SqliteStore
from roomd.actors.system import open_room_system
from tests.actor_helpers import member, persisted, settings_with

CAPACITY, TIMEOUT = 3, 20.0
USERS = ["creator", "u1", "u2", "u3", "u4"]
OK, NO_ROOM, NOT_MEMBER, FULL, EXISTS = "ok", "no_room", "not_member", "full", "exists"


class RoomModel:
    """SPEC §3 for one room created (seed era) by `creator`, in plain Python."""

    def __init__(self, now: float, creator_leave_closes: bool) -> None:
        self.closes_on_creator = creator_leave_closes
        self.members: dict[str, float] | None = {"creator": now + TIMEOUT}  # None = closed

    def _remove(self, user: str) -> None:
        assert self.members is not None
        del self.members[user]
        if (user == "creator" and self.closes_on_creator) or not self.members:
            self.members = None

    def create(self, now: float) -> str:
        """create_room with the same roomID, seed era: the creator joins at once."""
        if self.members is not None:
            return EXISTS
        self.members = {"creator": now + TIMEOUT}
        return OK

    def join(self, user: str, now: float) -> str:
        if self.members is None:
            return NO_ROOM
        if user not in self.members and len(self.members) >= CAPACITY:
            return FULL
        self.members[user] = now + TIMEOUT
        return OK

    def leave(self, user: str) -> str:
        if self.members is None:
            return NO_ROOM
        if user not in self.members:
            return NOT_MEMBER
        self._remove(user)
        return OK

    def heartbeat(self, user: str, now: float) -> str:
        if self.members is None:
            return NO_ROOM
        if user not in self.members:
            return NOT_MEMBER
        self.members[user] = now + TIMEOUT
        return OK

    def destroy(self, user: str) -> str:
        if self.members is None or user != "creator":
            return NO_ROOM  # "not the creator" is code 3 too
        self.members = None
        return OK

    def advance_to(self, now: float) -> None:
        while self.members is not None:
            due = [u for u, deadline in sorted(self.members.items(), key=lambda kv: kv[1]) if deadline <= now]
            if not due:
                return
            self._remove(due[0])

    def restart(self, now: float) -> None:
        if self.members is not None:
            self.members = {user: now + TIMEOUT for user in self.members}

    def observed(self) -> list[str] | None:
        return None if self.members is None else list(self.members)


def _kind(reply: Any) -> str:
    if isinstance(reply, Ok):
        return OK
    assert isinstance(reply, Refused)
    return {
        DomainError.NO_ROOM: NO_ROOM,
        DomainError.NOT_CREATOR: NO_ROOM,
        DomainError.NOT_MEMBER: NOT_MEMBER,
        DomainError.ROOM_FULL: FULL,
        DomainError.ROOM_EXISTS: EXISTS,
    }[reply.error]


# weighted so that rooms live long enough for deadlines to matter: joins and heartbeats
# often, leaves now and then, a destroy rarely; time in tenths of a second
_user_operation = st.tuples(
    st.sampled_from(["join"] * 3 + ["heartbeat"] * 4 + ["leave"] * 2 + ["destroy"]), st.sampled_from(USERS)
)
# mostly short steps, sometimes a jump close to the heartbeat timeout, to probe its boundary
_advance = st.tuples(
    st.just("advance"),
    st.one_of(st.integers(1, 40), st.integers(1, 40), st.integers(180, 230)).map(lambda tenths: tenths / 10),
)
operation = st.one_of(
    _user_operation,
    _user_operation,
    _user_operation,
    _user_operation,
    _advance,
    _advance,
    st.tuples(st.just("restart"), st.none()),
    st.tuples(st.just("create"), st.none()),
)


async def _observe(directory: Directory, room_id: str) -> list[str] | None:
    reply = await directory.call_room(room_id, GetRoom())
    return [m.user_id for m in reply.value.members] if isinstance(reply, Ok) else None


@contextlib.contextmanager
def writes_on_the_event_loop() -> Iterator[None]:
    """The store writes on the event loop: a mock clock would jump over time spent in its thread."""
    SqliteStore.write_in_thread = False
    try:
        yield
    finally:
        SqliteStore.write_in_thread = True


async def _play(operations: list[tuple[str, Any]], creator_leave_closes: bool, data_dir: Path) -> None:
    base = settings_with(
        max_members=CAPACITY, heartbeat_timeout=TIMEOUT, creator_leave_closes_room=creator_leave_closes
    )
    config = persisted(base, data_dir)
    model: RoomModel | None = None
    room_id = "model_room"
    index = 0
    while index <= len(operations):
        async with open_room_system(config) as system:
            directory = system.directory("multi_room")
            assert directory is not None
            if model is None:
                created = await directory.create_room(
                    CreateRoom(creator="creator", room_info="m", room_id=room_id, first_member=member("creator"))
                )
                assert created == Ok(room_id)
                model = RoomModel(trio.current_time(), creator_leave_closes)
            else:
                model.restart(trio.current_time())
            assert await _observe(directory, room_id) == model.observed()
            while index < len(operations):
                name, argument = operations[index]
                index += 1
                now = trio.current_time()
                if name == "restart":
                    break
                if name == "advance":
                    await trio.sleep(argument)
                    await trio.testing.wait_all_tasks_blocked()
                    model.advance_to(trio.current_time())
                elif name == "create":
                    created = await directory.create_room(
                        CreateRoom(creator="creator", room_info="m", room_id=room_id, first_member=member("creator"))
                    )
                    assert _kind(created) == model.create(now)
                elif name == "join":
                    assert _kind(await directory.call_room(room_id, Join(member(argument)))) == model.join(
                        argument, now
                    )
                elif name == "leave":
                    assert _kind(await directory.call_room(room_id, Leave(argument))) == model.leave(argument)
                elif name == "heartbeat":
                    assert _kind(await directory.call_room(room_id, Heartbeat(argument))) == model.heartbeat(
                        argument, now
                    )
                elif name == "destroy":
                    assert _kind(await directory.call_room(room_id, Destroy(argument))) == model.destroy(argument)
                observed = await _observe(directory, room_id)
                assert observed == model.observed(), (operations[:index], observed, model.observed())
                assert observed is None or len(observed) <= CAPACITY
            else:
                return


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(operation, min_size=10, max_size=60), creator_leave_closes=st.booleans())
def test_room_actor_matches_the_model(operations: list[tuple[str, Any]], creator_leave_closes: bool) -> None:
    with tempfile.TemporaryDirectory() as data_dir, writes_on_the_event_loop():
        trio.run(
            _play, operations, creator_leave_closes, Path(data_dir), clock=trio.testing.MockClock(autojump_threshold=0)
        )


@pytest.mark.parametrize("creator_leave_closes", [True, False])
def test_capacity_is_never_exceeded_under_any_order_of_joins(creator_leave_closes: bool) -> None:
    operations = [("join", user) for user in USERS * 3]
    with tempfile.TemporaryDirectory() as data_dir, writes_on_the_event_loop():
        trio.run(
            _play, operations, creator_leave_closes, Path(data_dir), clock=trio.testing.MockClock(autojump_threshold=0)
        )
