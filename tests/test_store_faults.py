"""A failing store write fails its own request only and leaves the room as it was; a create whose
caller stopped waiting leaves no room behind."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from roomd.actors.directory import Directory
from roomd.actors.messages import CreateRoom, Destroy, Heartbeat, Join, Leave, LeaveReason
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.store import SqliteStore
from roomd.actors.system import RoomSystem, open_room_system
from roomd.config import Settings
from roomd.qcloud.usersig import HmacUserSigner
from tests.actor_helpers import create, member, members_of, settings_with
from tests.conftest import IM_SDK_APP_ID, IM_SECRET, eventually
from tests.fake_im import FakeIm, start_fake_im


def persistent(tmp_path: Path, **kind_changes: object) -> Settings:
    base = settings_with(**kind_changes)
    return dataclasses.replace(base, server=dataclasses.replace(base.server, persist=True, data_dir=str(tmp_path)))


def refused_busy(reply: object) -> bool:
    return isinstance(reply, Refused) and reply.error is DomainError.BUSY and "could not be saved" in reply.detail


async def alice_and_bob(system: RoomSystem) -> tuple[Directory, SqliteStore, str]:
    """The multi_room directory, the store, and a room of alice's that bob has joined."""
    directory = system.directory("multi_room")
    assert directory is not None
    store = system.store
    assert isinstance(store, SqliteStore)
    room = await create(directory, "alice")
    await directory.call_room(room, Join(member("bob")))
    return directory, store, room


async def test_a_failed_write_fails_one_request_and_the_next_succeeds(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory, store, room = await alice_and_bob(system)

        store.inject_failures = 1
        assert refused_busy(await directory.call_room(room, Join(member("carol"))))
        assert await members_of(directory, room) == ["alice", "bob"]
        assert [len(r.members) for r in directory.page(0, 10)] == [2]  # the listing never saw carol
        assert isinstance(await directory.call_room(room, Join(member("carol"))), Ok)
        assert await members_of(directory, room) == ["alice", "bob", "carol"]

        for undone in (Leave("bob"), Destroy("alice"), Leave("alice")):
            store.inject_failures = 1
            assert refused_busy(await directory.call_room(room, undone)), undone
            assert await members_of(directory, room) == ["alice", "bob", "carol"]
        assert directory.closes == {} and directory.departures == {}

        store.inject_failures = 1
        refused = await directory.create_room(CreateRoom("dave", "d", room_id="r-dave", first_member=member("dave")))
        assert refused_busy(refused)
        assert await members_of(directory, "r-dave") is None
        assert await create(directory, "dave", room_id="r-dave") == "r-dave"
        assert store.failed_writes == 5
    async with open_room_system(persistent(tmp_path)) as system:  # what was refused is not on disk
        directory = system.directory("multi_room")
        assert directory is not None
        assert await members_of(directory, room) == ["alice", "bob", "carol"]
        assert await members_of(directory, "r-dave") == ["dave"]


@pytest.mark.slow
async def test_an_eviction_happens_on_time_even_when_it_cannot_be_saved(tmp_path: Path) -> None:
    settings = persistent(tmp_path, heartbeat_timeout=1.0, creator_leave_closes_room=False)
    async with open_room_system(settings) as system:
        directory, store, room = await alice_and_bob(system)
        store.inject_failures = 1
        with trio.fail_after(5):
            while directory.departures.get(LeaveReason.TIMEOUT) != 1:
                await trio.sleep(0.05)
                await directory.call_room(room, Heartbeat("alice"))
        assert await members_of(directory, room) == ["alice"]  # bob went at his deadline
        assert store.failed_writes == 1  # ... but the store still has him
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        restored_at = trio.current_time()
        assert await members_of(directory, room) == ["alice", "bob"]
        await eventually(lambda: directory.departures.get(LeaveReason.TIMEOUT, 0) >= 1, within=5)
        assert trio.current_time() - restored_at >= 0.9  # evicted again, after a fresh deadline


@pytest.mark.slow
async def test_a_create_whose_caller_gave_up_leaves_no_room(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, FakeIm(IM_SDK_APP_ID, "admin", secret_key=IM_SECRET))
        base = persistent(tmp_path)
        # bypasses the loader's rule call_timeout > im.timeout + grace, as an older config did
        settings = dataclasses.replace(
            base,
            server=dataclasses.replace(base.server, call_timeout=1.0),
            im=dataclasses.replace(
                base.im, sdk_app_id=IM_SDK_APP_ID, secret_key=IM_SECRET, base_url=fake.base_url, timeout=1.0
            ),
        )
        fake.behave(mode="ok", delay=0.99, only_api="create_group")
        signer = HmacUserSigner(IM_SDK_APP_ID, IM_SECRET)
        async with open_room_system(settings, user_signer=signer) as system:
            directory: Directory | None = system.directory("multi_room")
            assert directory is not None
            replies = []
            async with trio.open_nursery() as creators:

                async def one(i: int) -> None:
                    request = CreateRoom(f"u{i}", "r", room_id=f"r{i}", first_member=member(f"u{i}"))
                    replies.append((f"r{i}", await directory.create_room(request)))

                for i in range(10):
                    creators.start_soon(one, i)
            await trio.sleep(0.6)  # IM confirmations arrive at ~0.99 s; the rooms would be made then
            for room_id, reply in replies:
                exists = await members_of(directory, room_id) is not None
                assert exists == isinstance(reply, Ok), (room_id, reply)
            gone = [room_id for room_id, reply in replies if not isinstance(reply, Ok)]
            assert gone  # this configuration does make callers give up
            await eventually(lambda: all("destroy_group" in fake.calls_for(r) for r in gone), within=10)
        nursery.cancel_scope.cancel()


async def test_a_failing_creation_fails_that_request_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        sibling = await create(directory, "alice")
        real_new_room = directory._new_room

        def broken_once(*args: object) -> object:
            monkeypatch.setattr(directory, "_new_room", real_new_room)
            raise RuntimeError("injected fault in room creation")

        monkeypatch.setattr(directory, "_new_room", broken_once)
        failed = await directory.create_room(CreateRoom("bob", "b", first_member=member("bob")))
        assert isinstance(failed, Refused) and failed.error is DomainError.INTERNAL
        assert isinstance(await directory.call_room(sibling, Join(member("carol"))), Ok)  # siblings serve on
        assert await members_of(directory, sibling) == ["alice", "carol"]
        assert isinstance(await directory.create_room(CreateRoom("bob", "b", first_member=member("bob"))), Ok)
        assert directory.room_count == 2


async def test_a_store_that_is_behind_refuses_changes_before_applying_them(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory, store, room = await alice_and_bob(system)
        store.max_queued = 0  # as if 10,000 submissions were waiting for the disk
        for change in (Join(member("carol")), Leave("bob"), Destroy("alice")):
            refused = await directory.call_room(room, change)
            assert isinstance(refused, Refused) and refused.error is DomainError.BUSY and "behind" in refused.detail
        refused = await directory.create_room(CreateRoom("dave", "d", first_member=member("dave")))
        assert isinstance(refused, Refused) and "behind" in refused.detail
        assert await directory.call_room(room, Heartbeat("bob")) == Ok(None)  # writes nothing: served
        assert await members_of(directory, room) == ["alice", "bob"] and directory.room_count == 1
        store.max_queued = 10_000
        assert isinstance(await directory.call_room(room, Join(member("carol"))), Ok)
