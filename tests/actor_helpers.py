"""Small helpers for driving rooms and directories directly in actor tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from roomd.actors.directory import Directory
from roomd.actors.messages import CreateRoom, GetRoom, Heartbeat, MemberInfo, RoomSnapshot
from roomd.actors.replies import Ok
from roomd.actors.system import RoomSystem
from roomd.config import Settings


def settings_with(**kind_changes: object) -> Settings:
    """Default settings (persistence off) with `multi_room` changed as given."""
    base = Settings()
    kinds = dict(base.kinds)
    kinds["multi_room"] = dataclasses.replace(kinds["multi_room"], **kind_changes)  # type: ignore[arg-type]
    return dataclasses.replace(base, kinds=kinds, server=dataclasses.replace(base.server, persist=False))


def persisted(settings: Settings, data_dir: Path) -> Settings:
    """`settings` with persistence on, in `data_dir`."""
    return dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, persist=True, data_dir=str(data_dir))
    )


def directory_of(system: RoomSystem, kind: str) -> Directory:
    directory = system.directory(kind)
    assert directory is not None
    return directory


def member(user_id: str) -> MemberInfo:
    return MemberInfo(
        user_id=user_id,
        user_name=f"name of {user_id}",
        user_avatar=f"https://example.test/{user_id}.png",
        push_url=f"rtmp://push.example.test/live/0_{user_id}?x=1",
    )


async def create(directory: Directory, creator: str, *, join: bool = True, room_id: str | None = None) -> str:
    reply = await directory.create_room(
        CreateRoom(
            creator=creator,
            room_info=f"room of {creator}",
            room_id=room_id,
            first_member=member(creator) if join else None,
        )
    )
    assert isinstance(reply, Ok), reply
    return reply.value


async def members_of(directory: Directory, room_id: str) -> list[str] | None:
    """The member IDs of a room, or None when the room no longer exists."""
    reply = await directory.call_room(room_id, GetRoom())
    if not isinstance(reply, Ok):
        return None
    snapshot: RoomSnapshot = reply.value
    return [m.user_id for m in snapshot.members]


async def keep_alive(directory: Directory, room_id: str, user_id: str, every: float = 5) -> None:
    """Heartbeat for `user_id` every `every` seconds, until cancelled."""
    while True:
        await trio.sleep(every)
        await directory.call_room(room_id, Heartbeat(user_id))
