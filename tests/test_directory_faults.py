"""Faults injected where a directory creates, starts and restores rooms: each fails that one
request or room (code -1 at the edge, its stack in the log) and every sibling keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from roomd.actors.directory import Directory
from roomd.actors.messages import CloseReason, CreateRoom, Heartbeat
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.room import Room
from roomd.actors.system import open_room_system
from tests.actor_helpers import create, member, members_of, settings_with
from tests.test_persistence import persistent


@contextmanager
def logged_errors() -> Iterator[list[Any]]:
    """Error records with their exceptions, as the error log would get them."""
    records: list[Any] = []
    sink = logger.add(lambda message: records.append(message.record), level="ERROR")
    try:
        yield records
    finally:
        logger.remove(sink)


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, *, when: Any = lambda *a: True) -> list[str]:
    """Make `owner.name` raise once, on the first call for which `when(*args)` holds."""
    original = getattr(owner, name)
    failed: list[str] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        if not failed and when(*args):
            failed.append(name)
            raise RuntimeError(f"injected fault in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    return failed


async def serving(directory: Directory, room_id: str, user_id: str) -> bool:
    return await directory.call_room(room_id, Heartbeat(user_id)) == Ok(None)


@pytest.mark.parametrize("step", ["_create", "_start_room", "_new_room"])
async def test_a_fault_while_creating_fails_that_creation_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, step: str
) -> None:
    async with open_room_system(persistent(tmp_path)) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        sibling = await create(directory, "alice")
        failed = fail_once(monkeypatch, Directory, step)
        with logged_errors() as errors:
            refused = await directory.create_room(CreateRoom("bob", "b", room_id="r-bob", first_member=member("bob")))
        assert failed == [step]
        assert isinstance(refused, Refused) and refused.error is DomainError.INTERNAL
        assert any(r["exception"] is not None and "injected fault" in str(r["exception"].value) for r in errors)
        assert await serving(directory, sibling, "alice")
        assert await members_of(directory, "r-bob") is None  # nothing half made
        again = await directory.create_room(CreateRoom("bob", "b", room_id="r-bob", first_member=member("bob")))
        assert again == Ok("r-bob")
        assert await serving(directory, "r-bob", "bob")
        double = system.directory("double_room")
        assert double is not None and await create(double, "carol")


async def test_a_fault_while_restoring_one_room_keeps_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = persistent(tmp_path)
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        first = await create(directory, "alice", room_id="r-first")
        second = await create(directory, "bob", room_id="r-second")
    failed = fail_once(monkeypatch, Directory, "_restore_room", when=lambda _self, saved: saved.room_id == first)
    with logged_errors() as errors:
        async with open_room_system(settings) as system:
            directory = system.directory("multi_room")
            assert directory is not None
            assert failed == ["_restore_room"]
            assert await members_of(directory, first) is None
            assert await serving(directory, second, "bob")
            assert await create(directory, "carol")
    assert any(f"room={first}" in r["message"] and r["exception"] is not None for r in errors)


async def test_a_room_failing_outside_its_message_loop_closes_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = fail_once(monkeypatch, Room, "describe")
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        doomed = await create(directory, "alice")
        sibling = await create(directory, "bob")
        with logged_errors():
            described = await directory.describe(limit=10)
        assert failed == ["describe"]
        states = {child["path"].rsplit("/", 1)[1]: child["state"] for child in described["children"]}
        assert states[sibling] == "active"
        assert await members_of(directory, doomed) is None  # the room that failed closed
        assert await serving(directory, sibling, "bob")
        assert directory.closes == {CloseReason.CRASHED: 1}
