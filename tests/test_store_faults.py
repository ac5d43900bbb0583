"""A failing store write fails its own request only and leaves the room as it was; a change a room
makes by itself is written a second later, before anything made after it; a create whose caller
stopped waiting leaves no room behind."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from roomd.actors.directory import Directory
from roomd.actors.messages import CreateRoom, Destroy, Heartbeat, Join, Leave, LeaveReason, MemberSaved, RoomSaved
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.store import SqliteStore
from roomd.actors.system import RoomSystem, open_room_system
from roomd.config import Settings
from roomd.qcloud.usersig import HmacUserSigner
from tests.actor_helpers import create, member, members_of, persisted, settings_with
from tests.conftest import IM_SDK_APP_ID, IM_SECRET, eventually
from tests.fake_im import FakeIm, start_fake_im


def persistent(tmp_path: Path, **kind_changes: object) -> Settings:
    return persisted(settings_with(**kind_changes), tmp_path)


@pytest.fixture
def writes_on_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store writes on the event loop: a mock clock would jump over time spent in its thread."""
    monkeypatch.setattr(SqliteStore, "write_in_thread", False)


def stored_members(store: SqliteStore, room_id: str, *, kind: str = "multi_room") -> list[str]:
    """The member IDs the store holds for a room, in the order they are restored."""
    return [m.user_id for saved in store.load(kind) if saved.room_id == room_id for m in saved.members]


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
        restored = system.directory("multi_room")
        assert restored is not None
        assert await members_of(restored, room) == ["alice", "bob", "carol"]
        assert await members_of(restored, "r-dave") == ["dave"]


async def test_an_eviction_that_cannot_be_saved_happens_on_time_and_is_saved_on_the_retry(
    tmp_path: Path, autojump_clock: trio.abc.Clock, writes_on_the_event_loop: None
) -> None:
    settings = persistent(tmp_path, creator_leave_closes_room=False)
    async with open_room_system(settings) as system:
        directory, store, room = await alice_and_bob(system)
        await trio.sleep(10)
        assert await directory.call_room(room, Heartbeat("alice")) == Ok(None)
        store.inject_failures = 1
        await trio.sleep(10.5)  # bob's deadline (20 s) has passed
        assert directory.departures == {LeaveReason.TIMEOUT: 1}
        assert await members_of(directory, room) == ["alice"]  # bob went at his deadline
        assert store.failed_writes == 1 and stored_members(store, room) == ["alice", "bob"]  # ... unsaved
        await trio.sleep(1)
        assert stored_members(store, room) == ["alice"]  # saved on the retry, a second later
        assert store.failed_writes == 1
    async with open_room_system(settings) as system:
        restored = system.directory("multi_room")
        assert restored is not None
        assert await members_of(restored, room) == ["alice"]


async def test_a_room_made_again_after_a_close_that_failed_has_only_its_own_members(
    tmp_path: Path, autojump_clock: trio.abc.Clock, writes_on_the_event_loop: None
) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = system.directory("double_room")
        assert directory is not None
        store = system.store
        assert isinstance(store, SqliteStore)
        assert await create(directory, "alice", room_id="x") == "x"
        assert isinstance(await directory.call_room("x", Join(member("bob"))), Ok)
        store.inject_failures = 1
        await trio.sleep(20.5)  # alice and bob time out: the room closes by itself, and that write fails
        assert await members_of(directory, "x") is None and store.failed_writes == 1
        await trio.sleep(1)  # until the close is written, changes are refused
        assert await create(directory, "carol", room_id="x") == "x"
        assert isinstance(await directory.call_room("x", Join(member("dave"))), Ok)
        assert await members_of(directory, "x") == ["carol", "dave"]
    async with open_room_system(persistent(tmp_path)) as system:
        directory = system.directory("double_room")
        assert directory is not None
        assert await members_of(directory, "x") == ["carol", "dave"]


async def test_changes_are_refused_while_a_failed_one_waits_and_written_after_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock, writes_on_the_event_loop: None
) -> None:
    settings = persistent(tmp_path)
    async with open_room_system(settings) as system:
        directory, store, room = await alice_and_bob(system)
        assert isinstance(await directory.call_room(room, Join(member("carol"))), Ok)
        await trio.sleep(10)
        for user_id in ("alice", "carol"):
            assert await directory.call_room(room, Heartbeat(user_id)) == Ok(None)
        store.inject_failures = 1
        await trio.sleep(10.5)  # bob's eviction (at 20 s) failed; it is tried again at 21 s
        assert await members_of(directory, room) == ["alice", "carol"] and store.failed_writes == 1
        refused = await directory.call_room(room, Join(member("bob")))  # while the eviction waits
        assert isinstance(refused, Refused) and refused.error is DomainError.BUSY
        assert await members_of(directory, room) == ["alice", "carol"]  # refused before it was applied
        await trio.sleep(1)  # the eviction is written at 21 s
        assert isinstance(await directory.call_room(room, Join(member("bob"))), Ok)
        # removed, then added again (last): written the other way round, bob would be gone;
        # with the eviction dropped, he would still be second
        assert stored_members(store, room) == ["alice", "carol", "bob"]
    async with open_room_system(settings) as system:
        restored = system.directory("multi_room")
        assert restored is not None
        assert await members_of(restored, room) == ["alice", "carol", "bob"]


async def test_a_stop_gives_up_on_what_the_disk_still_refuses(
    tmp_path: Path, autojump_clock: trio.abc.Clock, writes_on_the_event_loop: None
) -> None:
    settings = persistent(tmp_path, creator_leave_closes_room=False)
    with trio.fail_after(30):  # the stop does not wait for the disk
        async with open_room_system(settings) as system:
            directory, store, room = await alice_and_bob(system)
            await trio.sleep(10)
            assert await directory.call_room(room, Heartbeat("alice")) == Ok(None)
            store.inject_failures = 1000
            await trio.sleep(10.5)  # bob's eviction (at 20 s) failed
            assert await members_of(directory, room) == ["alice"]
    assert store.failed_writes == 2  # at 20 s, and once more at the stop
    async with open_room_system(settings) as system:
        restored = system.directory("multi_room")
        assert restored is not None
        assert await members_of(restored, room) == ["alice", "bob"]  # as on disk: evicted again later


async def test_a_new_room_does_not_inherit_members_left_in_the_store_under_its_id(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = system.directory("double_room")
        assert directory is not None
        store = system.store
        assert isinstance(store, SqliteStore)
        left = [MemberSaved("double_room", "x", member(user_id)) for user_id in ("alice", "bob")]
        # what a close that was never written leaves: a room and its members, with no room in memory
        assert await store.write([RoomSaved("double_room", "x", "alice", "a"), *left]) is None
        assert await create(directory, "carol", room_id="x") == "x"
        assert isinstance(await directory.call_room("x", Join(member("dave"))), Ok)
        assert stored_members(store, "x", kind="double_room") == ["carol", "dave"]
    async with open_room_system(persistent(tmp_path)) as system:
        directory = system.directory("double_room")
        assert directory is not None
        assert await members_of(directory, "x") == ["carol", "dave"]


async def test_a_background_change_sqlite_refuses_is_dropped_not_retried(tmp_path: Path) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory, store, room = await alice_and_bob(system)
        unwritable = dataclasses.replace(member("eve"), user_name="\ud800")  # a lone surrogate: not UTF-8
        store.write_later([MemberSaved("multi_room", room, unwritable)], about="a test")
        with trio.fail_after(0.9):  # not kept waiting a second behind it
            assert isinstance(await directory.call_room(room, Join(member("carol"))), Ok)
        assert store.failed_writes == 1 and stored_members(store, room) == ["alice", "bob", "carol"]


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
        not_created = await directory.create_room(CreateRoom("dave", "d", first_member=member("dave")))
        assert isinstance(not_created, Refused) and "behind" in not_created.detail
        assert await directory.call_room(room, Heartbeat("bob")) == Ok(None)  # writes nothing: served
        assert await members_of(directory, room) == ["alice", "bob"] and directory.room_count == 1
        store.max_queued = 10_000
        assert isinstance(await directory.call_room(room, Join(member("carol"))), Ok)
