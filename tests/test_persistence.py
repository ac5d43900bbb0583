"""Rooms survive restarts: what was acknowledged is on disk, and comes back with fresh deadlines."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from loguru import logger

from roomd.actors.messages import Destroy, GetRoom, Heartbeat, Join, Leave, MemberInfo
from roomd.actors.replies import Ok
from roomd.actors.system import STORE_FILE, open_room_system
from roomd.config import Settings
from tests.actor_helpers import create, member, members_of, persisted, settings_with


def persistent(tmp_path: Path, **kind_changes: object) -> Settings:
    return persisted(settings_with(**kind_changes), tmp_path / "data")


# The store writes on a worker thread, which an autojump clock would jump over: these tests
# run on real time, with timers shortened to seconds.


@pytest.mark.slow
async def test_rooms_and_members_come_back_after_a_restart(tmp_path: Path) -> None:
    settings = persistent(tmp_path, creator_leave_closes_room=False, heartbeat_timeout=2.0, max_idle_duration=3.0)
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        kept = await create(directory, "alice")
        await directory.call_room(kept, Join(member("bob")))
        await directory.call_room(kept, Join(member("carol")))
        renamed = dataclasses.replace(member("bob"), user_name="Bob Renamed")
        await directory.call_room(kept, Join(renamed))
        await directory.call_room(kept, Leave("carol"))
        destroyed = await create(directory, "dave")
        assert await directory.call_room(destroyed, Destroy("dave")) == Ok(None)
        waiting = await create(directory, "erin", join=False)
    async with open_room_system(settings) as system:
        restored_by = trio.current_time()
        directory = system.directory("multi_room")
        assert directory is not None
        assert await members_of(directory, kept) == ["alice", "bob"]
        snapshot = (await directory.call_room(kept, GetRoom())).value  # type: ignore[union-attr]
        assert [m.user_name for m in snapshot.members] == ["name of alice", "Bob Renamed"]
        assert snapshot.room_info == "room of alice" and snapshot.creator == "alice"
        assert await members_of(directory, destroyed) is None
        assert await members_of(directory, waiting) == []
        assert [r.room_id for r in directory.page(0, 10)] == [kept]
        # fresh deadlines: alice keeps heartbeating, bob does not and goes 2 s after the restart
        for _ in range(4):
            await trio.sleep(0.25)
            await directory.call_room(kept, Heartbeat("alice"))
        if trio.current_time() - restored_by < 1.8:  # a slow machine may have made this late
            assert await members_of(directory, kept) == ["alice", "bob"]
        await trio.sleep_until(restored_by + 2.2)
        await directory.call_room(kept, Heartbeat("alice"))
        assert await members_of(directory, kept) == ["alice"]
        # the waiting room idles out 3 s after the restart
        await trio.sleep_until(restored_by + 3.2)
        assert await members_of(directory, waiting) is None
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        assert await members_of(directory, kept) == ["alice"]
        assert directory.room_count == 1


async def test_a_reply_is_sent_only_once_its_change_is_on_disk(tmp_path: Path) -> None:
    settings = persistent(tmp_path)
    database = tmp_path / "data" / STORE_FILE
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        with sqlite3.connect(database) as db:
            assert db.execute("SELECT room_id FROM rooms").fetchall() == [(room,)]
        for i in range(20):
            await directory.call_room(room, Join(member(f"guest{i}")))
            with sqlite3.connect(database) as db:
                stored = {u for (u,) in db.execute("SELECT user_id FROM members WHERE room_id = ?", (room,))}
            assert set(await members_of(directory, room) or []) == stored


async def test_heartbeats_are_never_written(tmp_path: Path) -> None:
    settings = persistent(tmp_path)
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        store = system.store
        written = store.changes_written  # type: ignore[attr-defined]
        for _ in range(50):
            assert await directory.call_room(room, Heartbeat("alice")) == Ok(None)
        assert store.changes_written == written  # type: ignore[attr-defined]
        same = MemberInfo(
            "alice", "name of alice", "https://example.test/alice.png", "rtmp://push.example.test/live/0_alice?x=1"
        )
        assert await directory.call_room(room, Join(same)) == Ok(None)
        assert store.changes_written == written  # type: ignore[attr-defined]


async def saved_room(settings: Settings, *guests: str) -> str:
    """A room of alice and `guests`, saved by a run of roomd that has ended; its roomID."""
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        for guest in guests:
            await directory.call_room(room, Join(member(guest)))
    return room


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="WARNING")
    yield lines
    logger.remove(sink)


async def test_rows_roomd_never_writes_are_left_out_of_a_restore_and_said_so(
    tmp_path: Path, warnings: list[str]
) -> None:
    settings = persistent(tmp_path)
    room = await saved_room(settings, "bob")
    with sqlite3.connect(tmp_path / "data" / STORE_FILE) as db:  # what another program could leave there
        db.execute("UPDATE members SET user_avatar = ? WHERE user_id = 'bob'", (b"\x00bytes",))
        db.execute(
            "INSERT INTO custom_fields (kind, room_id, name, value, seq) VALUES "
            "('multi_room', ?, 'half', 1.5, 1000), ('multi_room', ?, 'count', 7, 1001)",
            (room, room),
        )
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        assert await members_of(directory, room) == ["alice"]  # bob's row cannot be served
        snapshot = (await directory.call_room(room, GetRoom())).value  # type: ignore[union-attr]
        assert dict(snapshot.custom) == {"count": 7}
    assert (
        "left out of the multi_room rooms restored, as roomd never writes them so: 1 members, 1 custom fields"
        in warnings
    )


async def test_a_room_restored_over_a_lowered_max_members_keeps_them_and_takes_nobody_more(
    tmp_path: Path, warnings: list[str]
) -> None:
    room = await saved_room(persistent(tmp_path), "bob", "carol")
    async with open_room_system(persistent(tmp_path, max_members=2)) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        assert await members_of(directory, room) == ["alice", "bob", "carol"]
        assert not isinstance(await directory.call_room(room, Join(member("dave"))), Ok)
    assert any("room restored over its kind's limits (max_members=2" in w for w in warnings)
