"""The change store of a node in cluster mode: rooms' changes written to Redis, fenced by epoch.

It is the same `ChangeStore` rooms and directories use with SQLite: a
writer's `write` returns once Redis acknowledged its changes (with
`appendfsync always`, once they are on Redis' disk), and submissions are
written in the order they were made, many in one script call. Each room's
changes carry the epoch under which this node holds the room
(`hold`); Redis refuses them when the room has moved on (another owner or
epoch: the room was taken over) or when this node's lease is gone. Such a
write fails for good ("fenced"): the room is handed over (`on_fenced`),
and nothing written later by this node for that room can land.

Redis unreachable: requests' submissions fail at once (their rooms undo
them, the client hears "busy"); background ones (evictions, closes) wait
and are tried again every second, in order, and meanwhile requests'
changes are refused before they are applied, as for a failing disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio
from loguru import logger

from roomd.actors.messages import Change
from roomd.actors.store import MAX_QUEUED, RETRY_DELAY, SavedRoom, WriteFailed
from roomd.actors.submissions import Submission, SubmissionQueue
from roomd.cluster.redis_rooms import (
    FENCED,
    GONE_FOR_GOOD,
    NO_LEASE,
    OutboxKeys,
    RedisUnavailable,
    RoomsInRedis,
    operations,
    room_name,
)

MAX_BATCH = 500  # submissions per script call
LATE = WriteFailed("its deadline passed while it waited for Redis")


class RedisStore:
    persistent = True

    def __init__(
        self,
        rooms: RoomsInRedis,
        *,
        owner: Callable[[], str],
        on_fenced: Callable[[str, str], None],
        actor_path: str,
    ) -> None:
        self._rooms = rooms
        self._owner = owner
        self._on_fenced = on_fenced
        self.epochs: dict[tuple[str, str], int] = {}  # (kind, roomID) -> the epoch this node holds it under
        self.outbox: OutboxKeys | None = None  # webhooks: the streams a room's events go to
        self.outbox_cap = 0  # events kept per stream at most (Redis trims the oldest)
        self._queue = SubmissionQueue(logger.bind(actor=actor_path))
        self._retrying = False
        self._stopping = False
        self.failed_writes = 0
        self.fenced_writes = 0
        self.batches = 0
        self.finished = trio.Event()  # set once the writer has ended
        self.log = logger.bind(actor=actor_path)

    def hold(self, kind: str, room_id: str, epoch: int) -> None:
        self.epochs[(kind, room_id)] = epoch

    def drop(self, kind: str, room_id: str) -> None:
        self.epochs.pop((kind, room_id), None)

    # --- ChangeStore -----------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return not self._retrying and len(self._queue) < MAX_QUEUED

    def _submission(self, changes: list[Change], about: str | None, deadline: float) -> Submission:
        target = _room_of(changes)
        epoch = self.epochs.get(target) if target is not None else None
        return Submission(changes, about, deadline, target=target, epoch=epoch)

    async def write(self, changes: list[Change], *, deadline: float = math.inf) -> WriteFailed | None:
        submission = self._submission(changes, None, deadline)
        self._queue.add(submission)
        with trio.CancelScope(shield=True):
            await submission.done.wait()
        return submission.failure

    def write_later(self, changes: list[Change], *, about: str) -> None:
        self._queue.add(self._submission(changes, about, math.inf))

    def load(self, kind: str) -> list[SavedRoom]:
        return []  # rooms come to a node by claims and takeovers, never at start

    def stop(self) -> None:
        self._stopping = True
        self._queue.wake()

    # --- the writer --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[RedisStore] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        try:
            while True:
                if not self._queue:
                    if self._stopping:
                        return
                    await self._queue.wait()
                    continue
                batch = self._queue.next_batch(MAX_BATCH, LATE)
                if not batch:
                    continue
                with trio.CancelScope(shield=True):
                    kept = await self._write_batch(batch)
                self._retrying = bool(kept)
                if kept:
                    self._queue.put_back(kept)
                    self._queue.refuse_requests(WriteFailed("Redis is unavailable"))
                    if self._stopping:
                        self._queue.give_up(WriteFailed("the store stopped while Redis was unavailable"))
                        return
                    await trio.sleep(RETRY_DELAY)
        finally:
            self._queue.give_up(WriteFailed("the store stopped before writing"))
            self.finished.set()

    async def _write_batch(self, batch: list[Submission]) -> list[Submission]:
        """Write the batch; returns the background submissions kept to be tried again (Redis down)."""
        owner = self._owner()
        sent: list[Submission] = []
        for submission in batch:
            if submission.target is None or submission.epoch is None or not owner:
                # not held here (any more): made by a room instance that has been handed over
                submission.answer(WriteFailed("the room is not held by this node"))
            else:
                sent.append(submission)
        if not sent:
            return []
        entries = [
            (room_name(*s.target), str(s.epoch), operations(s.changes, self.outbox, self.outbox_cap))
            for s in sent
            if s.target is not None
        ]
        try:
            statuses = await self._rooms.write(owner, entries)
        except RedisUnavailable as error:
            self.failed_writes += 1
            kept: list[Submission] = []
            for submission in sent:
                if submission.about is not None and not self._stopping:
                    submission.failed_attempts += 1
                    if submission.failed_attempts == 1:
                        self.log.warning(
                            "changes of {} not saved ({}); trying again every second", submission.about, error
                        )
                    kept.append(submission)
                else:  # the script may have run before the reply was lost
                    submission.answer(WriteFailed(f"Redis is unavailable: {error}", maybe_written=True))
            return kept
        self.batches += 1
        for submission, status in zip(sent, statuses, strict=True):
            assert submission.target is not None
            current = self.epochs.get(submission.target) == submission.epoch
            if status == FENCED:
                self.fenced_writes += 1
                submission.failure = WriteFailed("the room is held by another node now")
                if current:  # else an earlier instance of the room, long replaced here
                    self.log.warning("write fenced room={}: another node holds it now", submission.target[1])
                    self.drop(*submission.target)
                    self._on_fenced(*submission.target)
            elif status == NO_LEASE:
                self.fenced_writes += 1
                submission.failure = WriteFailed("this node's lease is gone")
            else:
                if submission.failed_attempts:
                    self.log.info(
                        "changes of {} saved after {} failed attempts", submission.about, submission.failed_attempts
                    )
                if status == GONE_FOR_GOOD and current:
                    self.drop(*submission.target)  # nothing of the room is left to write
            submission.done.set()
        return []


def _room_of(changes: list[Change]) -> tuple[str, str] | None:
    """The one room `changes` belong to (rooms and directories submit one room's changes at a time)."""
    rooms = {(change.kind, change.room_id) for change in changes}
    return next(iter(rooms)) if len(rooms) == 1 else None
