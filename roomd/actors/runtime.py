"""Mailboxes, one-shot reply slots, calls with a deadline, and supervision.

An actor is a task that owns its state and reads an `Envelope` at a time
from a bounded trio memory channel. Others hold its `Mailbox` and `call`
it: deliver a message and wait for the reply until a deadline, which
travels with the message so that the actor bounds its own waits by it. A
full mailbox is never waited on: the caller is told "busy" at once, which
is the server's backpressure.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import trio

from roomd.actors.messages import Ask
from roomd.actors.replies import DomainError, Refused

M = TypeVar("M")
R = TypeVar("R")
COMMIT_WAIT = 30.0  # seconds a caller waits past its deadline for a change being written


class ReplySlot:
    """A one-shot place for a reply. Filling it twice keeps the first value.

    A caller that stops waiting abandons the slot (`abandoned`), so an actor
    can tell that nobody will learn what it did; a later `put` is dropped. An
    actor that has begun to make a change durable marks the slot
    `committing`: its caller then waits for the outcome past its deadline
    (at most COMMIT_WAIT), so that it is never told "busy" about a change
    that was made.
    """

    __slots__ = ("_event", "_value", "abandoned", "committing")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: Any = None
        self.abandoned = False
        self.committing = False

    def put(self, value: Any) -> None:
        if not self._event.is_set() and not self.abandoned:
            self._value = value
            self._event.set()

    def abandon(self) -> bool:
        """The caller stops waiting; False when the reply had already arrived."""
        if self._event.is_set():
            return False
        self.abandoned = True
        return True

    async def wait(self) -> Any:
        await self._event.wait()
        return self._value

    @property
    def value(self) -> Any:
        """The reply, once it has arrived (None before)."""
        return self._value


@dataclass(frozen=True, slots=True)
class Envelope(Generic[M]):
    """A message, the slot its answer goes to (none: nobody waits), and the trio time by
    which the caller needs the answer: work done for it should not wait past `deadline`."""

    message: M
    reply: ReplySlot | None = None
    deadline: float = math.inf

    def answer(self, value: object) -> None:
        if self.reply is not None:
            self.reply.put(value)

    @property
    def abandoned(self) -> bool:
        return self.reply is not None and self.reply.abandoned


class Mailbox(Generic[M]):
    """The sending side of an actor's bounded inbox."""

    def __init__(self, name: str, send: trio.MemorySendChannel[Envelope[M]]) -> None:
        self.name = name
        self.delivered = 0  # messages put into the inbox, shown by /debug/actors
        self._send = send

    async def call(self, message: Ask[R], *, deadline: float) -> R | Refused | Gone:
        """Deliver and wait for the reply until `deadline` (trio time); a `Refused` when it
        cannot be had in time, `GONE` when the actor has stopped.

        Cancelling the caller, or its deadline passing, abandons the reply: the
        actor still handles the message, since it was already delivered, but
        can see that nobody waits for the answer (`Envelope.abandoned`).
        """
        slot = ReplySlot()
        try:
            self._send.send_nowait(Envelope(message, slot, deadline))  # type: ignore[arg-type]  # M is the union of the Asks this mailbox takes
        except trio.WouldBlock:
            return Refused(DomainError.BUSY, f"{self.name} is busy; retry shortly")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return GONE
        self.delivered += 1
        started = trio.current_time()
        try:
            with trio.move_on_at(deadline):
                return cast("R", await slot.wait())
        except BaseException:  # the caller itself was cancelled (e.g. its client hung up)
            slot.abandon()
            raise
        if slot.committing:  # the actor is making the change durable: its outcome is the answer
            with trio.move_on_after(COMMIT_WAIT):
                return cast("R", await slot.wait())
        if not slot.abandon():  # the reply came in the same instant as the deadline
            return cast("R", await slot.wait())
        return Refused(DomainError.BUSY, f"{self.name} did not answer within {deadline - started:g} s")

    def close(self) -> None:
        """No more messages: the actor ends once it has read what is queued."""
        self._send.close()

    @property
    def depth(self) -> int:
        return self._send.statistics().current_buffer_used


class Gone(enum.Enum):
    """The actor's inbox is closed: it has stopped or is stopping. Never leaves the process:
    whoever calls a mailbox turns it into a `Refused` that means the same for that actor."""

    GONE = "gone"


GONE = Gone.GONE


def open_mailbox(name: str, size: int) -> tuple[Mailbox[Any], trio.MemoryReceiveChannel[Envelope[Any]]]:
    send, receive = trio.open_memory_channel[Envelope[Any]](size)
    return Mailbox(name, send), receive


def refuse_pending(inbox: trio.MemoryReceiveChannel[Envelope[Any]], refusal: Refused) -> int:
    """Answer every queued request with `refusal`; returns how many were queued."""
    drained = 0
    while True:
        try:
            envelope = inbox.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return drained
        envelope.answer(refusal)
        drained += 1


@dataclass(frozen=True)
class RestartPolicy:
    """How often a permanent actor may crash before its supervisor gives up."""

    max_restarts: int = 5  # within `window` seconds; one more and the crash propagates
    window: float = 30.0
    first_backoff: float = 0.1  # doubles with each restart inside the window
    max_backoff: float = 5.0


async def supervised(
    name: str, body: Callable[[], Awaitable[None]], *, log: Any, policy: RestartPolicy = RestartPolicy()
) -> None:
    """Run `body` until it returns; when it raises, log the stack and run it again after a backoff.

    Restarts are counted on `trio.current_time()`; more than `max_restarts`
    within `window` seconds re-raise the last crash to the parent.
    """
    crashes: collections.deque[float] = collections.deque()
    while True:
        try:
            await body()
            return
        except Exception:
            now = trio.current_time()
            crashes.append(now)
            while crashes and crashes[0] < now - policy.window:
                crashes.popleft()
            if len(crashes) > policy.max_restarts:
                log.opt(exception=True).critical(
                    "{} crashed {} times within {:g} s; giving up", name, len(crashes), policy.window
                )
                raise
            backoff = min(policy.max_backoff, policy.first_backoff * 2 ** (len(crashes) - 1))
            log.opt(exception=True).error("{} crashed; restarting in {:.2f} s", name, backoff)
            await trio.sleep(backoff)
