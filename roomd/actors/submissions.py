"""What a change store queues: submissions of changes, each answered once written or refused.

Both stores (SQLite in one process, Redis in a cluster) take submissions
in the order they were made and write them in batches; what differs is
how a batch is written. A submission either has a writer waiting for its
outcome (a request: `about` is None) or is written in the background
(`about` names who made it, for the log).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from roomd.actors.messages import Change

if TYPE_CHECKING:
    from loguru import Logger

    from roomd.actors.store import WriteFailed


class Submission:
    __slots__ = ("about", "changes", "deadline", "done", "epoch", "failed_attempts", "failure", "target")

    def __init__(
        self,
        changes: list[Change],
        about: str | None = None,
        deadline: float = math.inf,
        *,
        target: tuple[str, str] | None = None,
        epoch: int | None = None,
    ) -> None:
        self.changes = changes
        self.deadline = deadline  # not started by then: not written, the writer is told so
        self.about = about  # set when nobody waits for the outcome: who made the changes
        self.target = target  # cluster mode: the (kind, roomID) the changes are about ...
        self.epoch = epoch  # ... and the epoch it was held under when they were made
        self.done = trio.Event()
        self.failure: WriteFailed | None = None
        self.failed_attempts = 0

    def answer(self, failure: WriteFailed | None) -> None:
        self.failure = failure
        self.done.set()


class SubmissionQueue:
    """Submissions in the order they were made, for one writer task."""

    def __init__(self, log: Logger) -> None:
        self._items: deque[Submission] = deque()
        self._wake = trio.Event()
        self._log = log

    def __len__(self) -> int:
        return len(self._items)

    def add(self, submission: Submission) -> None:
        self._items.append(submission)
        self._wake.set()

    def wake(self) -> None:
        """Let the writer look again (it is stopping, say)."""
        self._wake.set()

    async def wait(self) -> None:
        """Until something was added, or `wake` was called."""
        await self._wake.wait()
        self._wake = trio.Event()

    def next_batch(self, limit: int, failure: WriteFailed) -> list[Submission]:
        """Up to `limit` submissions; those whose deadline has passed are answered `failure`."""
        now = trio.current_time()
        batch: list[Submission] = []
        while self._items and len(batch) < limit:
            submission = self._items.popleft()
            if submission.deadline < now:
                submission.answer(failure)
            else:
                batch.append(submission)
        return batch

    def put_back(self, kept: Iterable[Submission]) -> None:
        """Submissions to be tried again, ahead of everything made after them."""
        self._items.extendleft(reversed(list(kept)))

    def refuse_requests(self, failure: WriteFailed) -> None:
        """Answer the requests' queued submissions unwritten (their rooms undo them at once, as
        for a failed write); keep the background ones, in order."""
        kept: deque[Submission] = deque()
        for submission in self._items:
            if submission.about is None:
                submission.answer(failure)
            else:
                kept.append(submission)
        self._items = kept

    def give_up(self, failure: WriteFailed) -> None:
        """Answer every queued submission `failure`, unwritten (background ones logged)."""
        while self._items:
            submission = self._items.popleft()
            if submission.about is not None:
                self._log.error("changes of {} not saved: {}", submission.about, failure.reason)
            submission.answer(failure)
