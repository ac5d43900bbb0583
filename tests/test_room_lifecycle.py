"""Room lifecycle under an exact clock: heartbeats, timeouts, idle rooms, leaving."""

from __future__ import annotations

import trio

from roomd.actors.messages import Heartbeat, Join, Leave
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.system import open_room_system
from tests.actor_helpers import create, keep_alive, member, members_of, settings_with


async def test_silent_member_is_evicted_between_20_and_21_seconds(autojump_clock: trio.abc.Clock) -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        assert isinstance(await directory.call_room(room, Join(member("bob"))), Ok)
        bob_last_heartbeat = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_alive, directory, room, "alice")
            await trio.sleep_until(bob_last_heartbeat + 19.99)
            assert await members_of(directory, room) == ["alice", "bob"]
            await trio.sleep_until(bob_last_heartbeat + 21)
            assert await members_of(directory, room) == ["alice"]
            # alice keeps heartbeating: she stays for minutes
            await trio.sleep(300)
            assert await members_of(directory, room) == ["alice"]
            nursery.cancel_scope.cancel()


async def test_heartbeat_moves_the_deadline(autojump_clock: trio.abc.Clock) -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        await trio.sleep(15)
        assert isinstance(await directory.call_room(room, Heartbeat("alice")), Ok)
        await trio.sleep(15)  # 30 s after join, 15 s after the heartbeat
        assert await members_of(directory, room) == ["alice"]
        await trio.sleep(5.5)
        assert await members_of(directory, room) is None


async def test_eviction_happens_at_the_deadline_not_at_a_sweep(autojump_clock: trio.abc.Clock) -> None:
    async with open_room_system(settings_with(creator_leave_closes_room=False)) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        start = trio.current_time()
        await trio.sleep(3.3)
        await directory.call_room(room, Join(member("bob")))
        while await members_of(directory, room) == ["alice", "bob"]:  # noqa: ASYNC110 -- samples every 10 ms: the measure
            await trio.sleep(0.01)
        # alice was due at start + 20: she is gone within 10 ms of it, bob is still there
        assert 20 <= trio.current_time() - start < 20.02
        assert await members_of(directory, room) == ["bob"]


async def test_waiting_room_closes_at_idle_deadline(autojump_clock: trio.abc.Clock) -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice", join=False)
        await trio.sleep(29.9)
        assert await members_of(directory, room) == []
        await trio.sleep(0.2)
        assert await members_of(directory, room) is None
        assert directory.room_count == 0


async def test_joining_a_waiting_room_cancels_the_idle_deadline(autojump_clock: trio.abc.Clock) -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice", join=False)
        await trio.sleep(25)
        await directory.call_room(room, Join(member("alice")))
        await trio.sleep(10)  # past the idle deadline, within the heartbeat timeout
        assert await members_of(directory, room) == ["alice"]


async def test_creator_leaving_closes_the_room() -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        await directory.call_room(room, Join(member("bob")))
        assert await directory.call_room(room, Leave("alice")) == Ok(None)
        assert await members_of(directory, room) is None


async def test_creator_leaving_keeps_the_room_when_configured() -> None:
    async with open_room_system(settings_with(creator_leave_closes_room=False)) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        await directory.call_room(room, Join(member("bob")))
        assert await directory.call_room(room, Leave("alice")) == Ok(None)
        assert await members_of(directory, room) == ["bob"]


async def test_creator_timing_out_counts_as_leaving(autojump_clock: trio.abc.Clock) -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        await directory.call_room(room, Join(member("bob")))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_alive, directory, room, "bob")
            await trio.sleep(21)
            assert await members_of(directory, room) is None
            nursery.cancel_scope.cancel()


async def test_last_member_leaving_closes_the_room() -> None:
    async with open_room_system(settings_with(creator_leave_closes_room=False)) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        await directory.call_room(room, Join(member("bob")))
        await directory.call_room(room, Leave("alice"))
        assert await members_of(directory, room) == ["bob"]
        await directory.call_room(room, Leave("bob"))
        assert await members_of(directory, room) is None
        assert directory.room_count == 0


async def test_leave_and_heartbeat_by_a_non_member_are_refused() -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        for message in (Leave("mallory"), Heartbeat("mallory")):
            reply = await directory.call_room(room, message)
            assert isinstance(reply, Refused) and reply.error is DomainError.NOT_MEMBER
        assert await members_of(directory, room) == ["alice"]


async def test_shutdown_closes_every_room() -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        for user in ("a", "b", "c"):
            await create(directory, user)
        assert directory.room_count == 3
    assert directory.room_count == 0
