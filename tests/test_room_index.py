"""Listing rooms: creation order, only rooms with members, paging without asking any room."""

from __future__ import annotations

from roomd.actors.messages import Join, Leave, MemberView, RoomSnapshot
from roomd.actors.room_index import RoomIndex
from roomd.actors.system import open_room_system
from tests.actor_helpers import create, member, settings_with


def snap(room_id: str, *members: str) -> RoomSnapshot:
    return RoomSnapshot(room_id, "info", "creator", tuple(MemberView(m, m, "", None) for m in members))


def test_pages_in_creation_order_skipping_empty_rooms() -> None:
    index = RoomIndex(clock=lambda: 0.0)
    for i in range(6):
        index.upsert(snap(f"r{i}"))
    for i in (4, 1, 5, 2):  # rooms fill in another order than they were created
        index.upsert(snap(f"r{i}", "m"))
    assert [r.room_id for r in index.page(0, 10)] == ["r1", "r2", "r4", "r5"]
    assert [r.room_id for r in index.page(1, 2)] == ["r2", "r4"]
    assert index.page(4, 10) == [] and index.page(100, 10) == []
    index.remove("r2")
    index.upsert(snap("r4"))
    assert [r.room_id for r in index.page(0, 10)] == ["r1", "r5"]
    assert (index.room_count, index.listed_count) == (5, 2)


def test_admin_pages_follow_a_cursor_through_active_waiting_or_all_rooms() -> None:
    clock = iter(range(100))
    index = RoomIndex(clock=lambda: float(next(clock)))
    for i in range(6):
        index.upsert(snap(f"r{i}", *(["m"] if i % 2 else [])))
    every = index.after(-1, 4, state=None)
    assert [(seq, s.room_id, started) for seq, s, started in every] == [
        (0, "r0", 0.0),
        (1, "r1", 1.0),
        (2, "r2", 2.0),
        (3, "r3", 3.0),
    ]
    assert [s.room_id for _, s, _ in index.after(every[-1][0], 4, state=None)] == ["r4", "r5"]
    assert [s.room_id for _, s, _ in index.after(-1, 10, state="active")] == ["r1", "r3", "r5"]
    assert [s.room_id for _, s, _ in index.after(2, 10, state="waiting")] == ["r4"]
    index.upsert(snap("r4", "m"))  # joined: active now, where it was made
    index.remove("r1")
    assert [s.room_id for _, s, _ in index.after(-1, 10, state="active")] == ["r3", "r4", "r5"]
    assert [s.room_id for _, s, _ in index.after(-1, 10, state="waiting")] == ["r0", "r2"]


async def test_listing_never_messages_a_room() -> None:
    async with open_room_system(settings_with(creator_leave_closes_room=False)) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        rooms = [await create(directory, f"creator{i}") for i in range(30)]
        await directory.call_room(rooms[3], Join(member("guest")))
        await directory.call_room(rooms[0], Leave("creator0"))
        delivered = {room_id: box.delivered for room_id, box in directory.room_mailboxes().items()}
        for start in range(0, 40, 7):
            directory.page(start, 5)
        page = directory.page(2, 2)
        assert [r.room_id for r in page] == rooms[3:5]
        assert [m.user_id for m in page[0].members] == ["creator3", "guest"]
        assert {room_id: box.delivered for room_id, box in directory.room_mailboxes().items()} == delivered
