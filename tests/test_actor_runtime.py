"""Mailboxes and supervision: backpressure instead of unbounded queues, crashes stay local."""

from __future__ import annotations

import dataclasses

import trio

from roomd.actors.messages import CloseReason, GetRoom, Heartbeat, Leave
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.runtime import COMMIT_WAIT, GONE, open_mailbox
from roomd.actors.system import open_room_system
from tests.actor_helpers import create, members_of, settings_with


async def test_a_full_mailbox_answers_busy_at_once() -> None:
    settings = settings_with()
    settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server, mailbox_size=2))
    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        room = await create(directory, "alice")
        replies: list[object] = []

        async def heartbeat() -> None:
            replies.append(await directory.call_room(room, Heartbeat("alice")))

        async with trio.open_nursery() as nursery:
            for _ in range(5):  # all five send before the room gets to run
                nursery.start_soon(heartbeat)
        # one message goes straight to the waiting room, two fill the mailbox
        busy = [r for r in replies if isinstance(r, Refused) and r.error is DomainError.BUSY]
        assert len(busy) == 2 and replies.count(Ok(None)) == 3
        assert "busy" in busy[0].detail  # type: ignore[union-attr]


async def test_an_actor_that_does_not_answer_in_time_is_busy(autojump_clock: trio.abc.Clock) -> None:
    mailbox, inbox = open_mailbox("slow actor", 4)
    reply = await mailbox.call(GetRoom(), deadline=trio.current_time() + 2.5)
    assert reply == Refused(DomainError.BUSY, "slow actor did not answer within 2.5 s")
    inbox.close()
    assert await mailbox.call(GetRoom(), deadline=trio.current_time() + 1) is GONE


async def test_a_crashing_room_closes_alone() -> None:
    async with open_room_system(settings_with()) as system:
        directory = system.directory("multi_room")
        assert directory is not None
        doomed = await create(directory, "alice")
        sibling = await create(directory, "bob")
        reply = await directory.call_room(doomed, "not a room message")  # type: ignore[arg-type]
        assert isinstance(reply, Refused) and reply.error is DomainError.INTERNAL
        assert await members_of(directory, doomed) is None
        assert directory.closes == {CloseReason.CRASHED: 1}
        assert await members_of(directory, sibling) == ["bob"]
        assert await create(directory, "carol")


async def test_a_caller_hears_the_outcome_of_a_change_being_written_past_its_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    mailbox, inbox = open_mailbox("room r", 4)

    async def writing_actor(outcome: object, write_takes: float) -> None:
        envelope = await inbox.receive()
        assert envelope.reply is not None
        envelope.reply.committing = True  # the change is on its way to the disk
        await trio.sleep(write_takes)
        envelope.answer(outcome)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writing_actor, Ok(None), 3.0)
        started = trio.current_time()
        assert await mailbox.call(Leave("alice"), deadline=started + 1) == Ok(None)  # not "busy"
        assert trio.current_time() == started + 3.0
        # a write that never ends: the caller gives up COMMIT_WAIT past its deadline
        nursery.start_soon(writing_actor, Ok(None), 10_000.0)
        started = trio.current_time()
        late = await mailbox.call(Leave("alice"), deadline=started + 1)
        assert isinstance(late, Refused) and late.error is DomainError.BUSY
        assert trio.current_time() == started + 1 + COMMIT_WAIT
        nursery.cancel_scope.cancel()
