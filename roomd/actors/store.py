"""Room state that survives restarts and crashes: an embedded SQLite database.

Rooms record their changes here (created, member joined or updated, member
left, audience listed or gone, custom field set, closed), never heartbeats. The store actor writes what has been
submitted in batches, on a worker thread, each batch one transaction
committed with `synchronous = FULL`; only then does a writer's `write`
return. So whatever a client was told succeeded is on disk, `kill -9`
included, while a burst of joins across rooms costs one fsync, not one each.

A write that fails (disk full, I/O error, a read-only file, a value SQLite
refuses) fails only the submissions it concerns: a failed batch is retried
one submission at a time, each in its own transaction, and each writer is
told whether its own changes are on disk. A background submission (what a
room does by itself: nobody waits to undo it) that fails on the disk is
kept instead, with the background submissions after it, and tried again
every second: nothing submitted later is written before it, so the disk
never holds a later change without an earlier one. Meanwhile requests are
refused: those queued are answered "not saved" at once (their rooms undo
them) and `accepting` is False, so rooms refuse changes before applying
them, as for a disk that is behind.
One that fails for another reason (a bug: a value SQLite refuses) is
dropped with its stack logged. The store itself never stops on a failed
write, so service resumes by itself once the disk has room again. Once
stopping, it writes what is queued at once and gives up (logged) on what
fails on the disk.

A closed room's members go at once, but the room stays, marked closing,
until IM has confirmed that its group is gone (`GroupDestroyed`), so a
process that dies in between still destroys the group at its next start.

At start each directory loads its kind's rooms: open ones are restored
with their members on fresh heartbeat deadlines (and their IM groups made
again, which IM answers "already yours" when they exist); closing ones
have their IM groups destroyed.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from loguru import logger

from roomd.actors.events import OutboxRow, event_body
from roomd.actors.messages import (
    Audience,
    AudienceRemoved,
    AudienceSaved,
    Change,
    CustomFields,
    CustomFieldSaved,
    EventDelivered,
    EventQueued,
    GroupDestroyed,
    MemberInfo,
    MemberRemoved,
    MemberSaved,
    RoomRemoved,
    RoomSaved,
)
from roomd.actors.submissions import Submission, SubmissionQueue

MAX_BATCH = 1000
MAX_QUEUED = 10_000  # submissions waiting for the disk; beyond it requests that change something are refused
RETRY_DELAY = 1.0  # seconds between attempts at a background submission that failed on the disk

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    kind TEXT NOT NULL, room_id TEXT NOT NULL, creator TEXT NOT NULL, room_info TEXT NOT NULL,
    seq INTEGER NOT NULL, closing INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (kind, room_id));
CREATE TABLE IF NOT EXISTS members (
    kind TEXT NOT NULL, room_id TEXT NOT NULL, user_id TEXT NOT NULL, user_name TEXT NOT NULL,
    user_avatar TEXT NOT NULL, push_url TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (kind, room_id, user_id));
CREATE TABLE IF NOT EXISTS audiences (
    kind TEXT NOT NULL, room_id TEXT NOT NULL, user_id TEXT NOT NULL, user_info TEXT NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (kind, room_id, user_id));
CREATE TABLE IF NOT EXISTS custom_fields (
    kind TEXT NOT NULL, room_id TEXT NOT NULL, name TEXT NOT NULL, value NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (kind, room_id, name));
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL, kind TEXT NOT NULL, room_id TEXT NOT NULL,
    body TEXT NOT NULL, made REAL NOT NULL);
"""
# a value column without a type keeps what it is given: a string stays TEXT, an integer INTEGER
ROOM_PARTS = ("members", "audiences", "custom_fields")  # what goes with a room when it closes or is made anew


@dataclass(frozen=True)
class SavedRoom:
    room_id: str
    creator: str
    room_info: str
    members: tuple[MemberInfo, ...]
    closing: bool = False  # closed, but its IM group was not yet confirmed gone
    audiences: tuple[Audience, ...] = ()
    custom: CustomFields = ()


@dataclass(frozen=True)
class WriteFailed:
    """Changes that did not reach the disk, and why (for the log; clients get a generic detail).
    `maybe_written`: the store cannot tell (a reply from Redis was lost): they may be there."""

    reason: str
    maybe_written: bool = False


LATE = WriteFailed("its deadline passed while it waited for the disk")


class EventOutbox:
    """What a store does with webhook events: one row per receiver, handed on once saved."""

    def __init__(self) -> None:
        self.urls: tuple[str, ...] = ()  # webhooks.urls; none: events are not kept
        self.on_saved: Callable[[list[OutboxRow]], None] = lambda rows: None


class NullStore:
    """`server.persist = false`: nothing is kept, every write succeeds at once (webhook events
    are handed on at once, and lost with the process)."""

    persistent = False
    accepting = True
    failed_writes = 0

    def __init__(self) -> None:
        self.outbox = EventOutbox()
        self._rows = itertools.count(1)

    async def write(self, changes: list[Change], *, deadline: float = math.inf) -> WriteFailed | None:
        self.write_later(changes, about="")
        return None

    def write_later(self, changes: list[Change], *, about: str) -> None:
        rows = [
            OutboxRow(next(self._rows), receiver, c.kind, c.room_id, event_body(c.event), c.event.time)
            for c in changes
            if isinstance(c, EventQueued)
            for receiver in range(len(self.outbox.urls))
        ]
        if rows:
            self.outbox.on_saved(rows)

    def load(self, kind: str) -> list[SavedRoom]:
        return []


class SqliteStore:
    persistent = True
    # tests under a mock clock set this False (it would jump over time spent in a worker thread)
    write_in_thread = True

    def __init__(self, path: Path, *, actor_path: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.log = logger.bind(actor=actor_path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(SCHEMA)
        if "closing" not in {row[1] for row in self._db.execute("PRAGMA table_info(rooms)")}:  # made before it
            self._db.execute("ALTER TABLE rooms ADD COLUMN closing INTEGER NOT NULL DEFAULT 0")
        self._seq = (
            self._db.execute(
                "SELECT max(s) FROM (SELECT max(seq) AS s FROM rooms UNION ALL SELECT max(seq) FROM members "
                "UNION ALL SELECT max(seq) FROM audiences UNION ALL SELECT max(seq) FROM custom_fields)"
            ).fetchone()[0]
            or 0
        )
        self._queue = SubmissionQueue(self.log)
        self.outbox = EventOutbox()
        self._rows_pending: list[OutboxRow] = []  # made by the transaction under way
        self._rows_saved: list[OutboxRow] = []  # committed, not yet handed on
        self.max_queued = MAX_QUEUED
        self._stopping = trio.Event()
        self._retrying = False  # a background submission failed on the disk and waits to be tried again
        self.batches = 0
        self.changes_written = 0
        self.failed_writes = 0  # failed attempts at writing a submission (a retried one counts each time)
        self.inject_failures = 0  # test hook: fail the next N submissions as a full disk would

    # --- what rooms and directories call --------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether a request may make changes now: False while `max_queued` submissions wait
        for the disk, so that a slow disk is answered "busy" instead of queueing without bound,
        and while a background change waits to be tried again, so that a failing disk is."""
        return not self._retrying and len(self._queue) < self.max_queued

    async def write(self, changes: list[Change], *, deadline: float = math.inf) -> WriteFailed | None:
        """Make `changes` durable; None once they are on disk, else why not.

        Submissions are written in the order they were made. One still queued
        at `deadline` (trio time) is not written: the writer is told so and
        can undo what it applied, instead of waiting past its caller. The
        wait is shielded from cancellation: a caller always learns the
        outcome of changes it has already applied in memory.
        """
        submission = Submission(changes, deadline=deadline)
        self._queue.add(submission)
        with trio.CancelScope(shield=True):
            await submission.done.wait()
        return submission.failure

    def write_later(self, changes: list[Change], *, about: str) -> None:
        """Write `changes` in order with every other submission, without waiting. A failure
        is logged (naming `about`) and counted, since nobody else will report it; one on
        the disk is tried again every second, before anything submitted after it."""
        self._queue.add(Submission(changes, about))

    def load(self, kind: str) -> list[SavedRoom]:
        rooms = self._db.execute(
            "SELECT room_id, creator, room_info, closing FROM rooms WHERE kind = ? ORDER BY seq", (kind,)
        ).fetchall()
        # rows roomd did not write (another program, an older version, a damaged file) are left out and
        # counted: a value of the wrong type would fail every request that reads it
        left_out: collections.Counter[str] = collections.Counter()
        members: dict[str, list[MemberInfo]] = {}
        for row in self._db.execute(
            "SELECT room_id, user_id, user_name, user_avatar, push_url FROM members WHERE kind = ? ORDER BY seq",
            (kind,),
        ):
            if not _all_text(row):
                left_out["members"] += 1
                continue
            room_id, user_id, name, avatar, push_url = row
            members.setdefault(room_id, []).append(MemberInfo(user_id, name, avatar, push_url))
        audiences: dict[str, list[Audience]] = {}
        for row in self._db.execute(
            "SELECT room_id, user_id, user_info FROM audiences WHERE kind = ? ORDER BY seq", (kind,)
        ):
            if not _all_text(row):
                left_out["audiences"] += 1
                continue
            room_id, user_id, user_info = row
            audiences.setdefault(room_id, []).append(Audience(user_id, user_info))
        custom: dict[str, list[tuple[str, str | int]]] = {}
        for room_id, name, value in self._db.execute(
            "SELECT room_id, name, value FROM custom_fields WHERE kind = ? ORDER BY seq", (kind,)
        ):
            if not _all_text((room_id, name)) or not (_all_text((value,)) or type(value) is int):
                left_out["custom fields"] += 1
                continue
            custom.setdefault(room_id, []).append((name, value))
        sound_rooms = [row for row in rooms if _all_text(row[:3])]
        if len(sound_rooms) < len(rooms):
            left_out["rooms"] += len(rooms) - len(sound_rooms)
        if left_out:
            self.log.warning(
                "left out of the {} rooms restored, as roomd never writes them so: {}",
                kind,
                ", ".join(f"{count} {what}" for what, count in left_out.items()),
            )
        return [
            SavedRoom(
                r,
                c,
                i,
                tuple(members.get(r, ())),
                bool(closing),
                audiences=tuple(audiences.get(r, ())),
                custom=tuple(custom.get(r, ())),
            )
            for r, c, i, closing in sound_rooms
        ]

    def load_outbox(self) -> list[OutboxRow]:
        """The webhook events saved and not yet delivered, oldest first. Those for a receiver no
        longer in webhooks.urls are deleted (they never go to another one), and counted in the log."""
        receivers = {url: index for index, url in enumerate(self.outbox.urls)}
        rows: list[OutboxRow] = []
        gone: list[int] = []
        for row, url, kind, room_id, body, made in self._db.execute(
            "SELECT id, url, kind, room_id, body, made FROM webhook_outbox ORDER BY id"
        ):
            if url in receivers:
                rows.append(OutboxRow(row, receivers[url], kind, room_id, body, made))
            else:
                gone.append(row)
        if gone:
            self._db.executemany("DELETE FROM webhook_outbox WHERE id = ?", [(row,) for row in gone])
            self.log.warning("{} webhook events for receivers no longer configured were deleted", len(gone))
        return rows

    # --- the actor ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[SqliteStore] = trio.TASK_STATUS_IGNORED) -> None:
        self.log.info("store started path={}", self.path)
        task_status.started(self)
        try:
            while True:
                if not self._queue:
                    if self._stopping.is_set():
                        return
                    await self._queue.wait()
                    continue
                batch = self._queue.next_batch(
                    MAX_BATCH, WriteFailed("its deadline passed while it waited for the disk")
                )
                if not batch:
                    continue
                # shielded: a batch that reached the thread is finished and answered, even when stopping
                with trio.CancelScope(shield=True):
                    if self.write_in_thread:
                        kept = await trio.to_thread.run_sync(self._write_batch, batch)
                    else:
                        kept = self._write_batch(batch)
                        await trio.lowlevel.checkpoint()
                if self._rows_saved:
                    saved, self._rows_saved = self._rows_saved, []
                    self.outbox.on_saved(saved)
                for submission in batch[: len(batch) - len(kept)]:
                    if submission.failed_attempts and submission.failure is None:
                        self.log.info(
                            "changes of {} saved after {} failed attempts", submission.about, submission.failed_attempts
                        )
                    submission.done.set()
                self._retrying = bool(kept)
                if kept:
                    self._queue.put_back(kept)
                    self._queue.refuse_requests(WriteFailed("the server's storage is failing"))
                    if self._stopping.is_set():
                        self._queue.give_up(WriteFailed("the store stopped while the disk was failing"))
                    else:
                        with trio.move_on_after(RETRY_DELAY):  # a stop cuts the wait short
                            await self._stopping.wait()
        finally:
            self._queue.give_up(WriteFailed("the store stopped before writing"))  # when cancelled from outside
            self._db.close()
            self.log.info("store stopped batches={} changes={}", self.batches, self.changes_written)

    def stop(self) -> None:
        """Write what is queued at once, then end; what fails on the disk from now on is
        given up (logged), not tried again."""
        self._stopping.set()
        self._queue.wake()

    def _write_batch(self, batch: list[Submission]) -> list[Submission]:
        """One transaction for the batch; when it fails, one per submission, so a failure
        costs only the submissions it concerns. Returns the tail of the batch kept to be
        tried again: from a background submission that failed on the disk on. Never raises
        for a failed write."""
        try:
            self._transaction(batch)
            return []
        except Exception as error:
            if len(batch) == 1:
                return batch if self._failed(batch[0], error) else []
        for i, submission in enumerate(batch):
            try:
                self._transaction([submission])
            except Exception as error:
                if self._failed(submission, error):
                    return batch[i:]
        return []

    def _transaction(self, batch: list[Submission]) -> None:
        db = self._db
        if self.inject_failures > 0:  # a whole batch fails; each submission then counts once
            if len(batch) == 1:
                self.inject_failures -= 1
            raise sqlite3.OperationalError("database or disk is full (injected)")
        db.execute("BEGIN")
        self._rows_pending = []
        try:
            for submission in batch:
                for change in submission.changes:
                    self._apply(db, change)
            db.execute("COMMIT")
            self._rows_saved.extend(self._rows_pending)
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # SQLite rolled back by itself (e.g. on SQLITE_FULL)
                    db.execute("ROLLBACK")
            raise
        self.batches += 1
        self.changes_written += sum(len(s.changes) for s in batch)

    def _failed(self, submission: Submission, error: Exception) -> bool:
        """Count and log a failed attempt; True when the submission is kept to be tried again."""
        self.failed_writes += 1
        submission.failed_attempts += 1
        if not _on_disk(error):  # a bug in what was submitted: trying again would fail again
            self.log.opt(exception=error).error("store write failed on a change it cannot write")
        elif submission.about is not None:
            if submission.failed_attempts == 1:
                self.log.warning("changes of {} not saved ({}); trying again every second", submission.about, error)
            return True
        submission.failure = WriteFailed(f"{type(error).__name__}: {error}")
        return False

    def _apply(self, db: sqlite3.Connection, change: Change) -> None:
        self._seq += 1
        match change:
            case RoomSaved(kind, room_id, creator, room_info, created):
                if created:  # what a close that was never written left is not the new room's
                    _delete_parts(db, kind, room_id)
                db.execute(
                    "INSERT INTO rooms (kind, room_id, creator, room_info, seq) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (kind, room_id) DO UPDATE SET creator = excluded.creator, "
                    "room_info = excluded.room_info, "
                    "seq = CASE WHEN closing THEN excluded.seq ELSE seq END, closing = 0",
                    (kind, room_id, creator, room_info, self._seq),
                )
            case MemberSaved(kind, room_id, m):
                db.execute(
                    "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, room_id, user_id) "
                    "DO UPDATE SET user_name = excluded.user_name, user_avatar = excluded.user_avatar, "
                    "push_url = excluded.push_url",
                    (kind, room_id, m.user_id, m.user_name, m.user_avatar, m.push_url, self._seq),
                )
            case MemberRemoved(kind, room_id, user_id):
                db.execute(
                    "DELETE FROM members WHERE kind = ? AND room_id = ? AND user_id = ?", (kind, room_id, user_id)
                )
            case RoomRemoved(kind, room_id):
                _delete_parts(db, kind, room_id)
                db.execute("UPDATE rooms SET closing = 1 WHERE kind = ? AND room_id = ?", (kind, room_id))
            case GroupDestroyed(kind, room_id):
                db.execute("DELETE FROM rooms WHERE kind = ? AND room_id = ? AND closing", (kind, room_id))
            case AudienceSaved(kind, room_id, audience):
                db.execute(
                    "INSERT INTO audiences VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, room_id, user_id) "
                    "DO UPDATE SET user_info = excluded.user_info",
                    (kind, room_id, audience.user_id, audience.user_info, self._seq),
                )
            case AudienceRemoved(kind, room_id, user_id):
                db.execute(
                    "DELETE FROM audiences WHERE kind = ? AND room_id = ? AND user_id = ?", (kind, room_id, user_id)
                )
            case EventQueued(kind, room_id, made):
                body = event_body(made)
                for receiver, url in enumerate(self.outbox.urls):
                    cursor = db.execute(
                        "INSERT INTO webhook_outbox (url, kind, room_id, body, made) VALUES (?, ?, ?, ?, ?)",
                        (url, kind, room_id, body, made.time),
                    )
                    assert cursor.lastrowid is not None
                    self._rows_pending.append(OutboxRow(cursor.lastrowid, receiver, kind, room_id, body, made.time))
            case EventDelivered(_, _, row):
                db.execute("DELETE FROM webhook_outbox WHERE id = ?", (row,))
            case CustomFieldSaved(kind, room_id, name, value):
                db.execute(
                    "INSERT INTO custom_fields VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, room_id, name) "
                    "DO UPDATE SET value = excluded.value",
                    (kind, room_id, name, value, self._seq),
                )


def _delete_parts(db: sqlite3.Connection, kind: str, room_id: str) -> None:
    for table in ROOM_PARTS:
        db.execute(f"DELETE FROM {table} WHERE kind = ? AND room_id = ?", (kind, room_id))


def _on_disk(error: Exception) -> bool:
    """Whether `error` is the storage failing (full, I/O, read-only, locked, corrupt), not what was written."""
    refused = (
        sqlite3.IntegrityError,
        sqlite3.ProgrammingError,
        sqlite3.DataError,
        sqlite3.NotSupportedError,
        sqlite3.InternalError,
    )
    return isinstance(error, OSError) or (isinstance(error, sqlite3.DatabaseError) and not isinstance(error, refused))


def _all_text(values: tuple[object, ...]) -> bool:
    return all(type(value) is str for value in values)
