"""Room state that survives restarts and crashes: an embedded SQLite database.

Rooms record their changes here (created, member joined or updated, member
left, closed), never heartbeats. The store actor writes what has been
submitted in batches, on a worker thread, each batch one transaction
committed with `synchronous = FULL`; only then are the replies that waited
for those changes sent. So whatever a client was told succeeded is on disk,
`kill -9` included, while a burst of joins costs one fsync, not one each.

At start each directory loads its kind's open rooms and members and
restores them with fresh heartbeat deadlines.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from loguru import logger

from roomd.actors.messages import MemberInfo
from roomd.actors.runtime import ReplySlot

MAX_BATCH = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    kind TEXT NOT NULL, room_id TEXT NOT NULL, creator TEXT NOT NULL, room_info TEXT NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (kind, room_id));
CREATE TABLE IF NOT EXISTS members (
    kind TEXT NOT NULL, room_id TEXT NOT NULL, user_id TEXT NOT NULL, user_name TEXT NOT NULL,
    user_avatar TEXT NOT NULL, push_url TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (kind, room_id, user_id));
"""


# --- changes: plain data, what a room tells the store ------------------------------------


@dataclass(frozen=True, slots=True)
class RoomSaved:
    kind: str
    room_id: str
    creator: str
    room_info: str


@dataclass(frozen=True, slots=True)
class MemberSaved:
    kind: str
    room_id: str
    member: MemberInfo


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    kind: str
    room_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class RoomRemoved:
    kind: str
    room_id: str


Change = RoomSaved | MemberSaved | MemberRemoved | RoomRemoved


@dataclass(frozen=True)
class SavedRoom:
    room_id: str
    creator: str
    room_info: str
    members: tuple[MemberInfo, ...]


@dataclass
class _Submission:
    changes: list[Change]
    reply: ReplySlot | None
    value: Any


class NullStore:
    """`server.persist = false`: nothing is kept, every reply goes at once."""

    persistent = False

    def commit(self, changes: list[Change], reply: ReplySlot | None, value: Any) -> None:
        if reply is not None:
            reply.put(value)

    def load(self, kind: str) -> list[SavedRoom]:
        return []


class SqliteStore:
    persistent = True

    def __init__(self, path: Path, *, actor_path: str, write_in_thread: bool = True) -> None:
        """`write_in_thread=False` writes on the event loop: for tests under a mock clock,
        which would jump over time spent in a worker thread."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write_in_thread = write_in_thread
        self.log = logger.bind(actor=actor_path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(SCHEMA)
        self._seq = self._db.execute(
            "SELECT max(s) FROM (SELECT max(seq) AS s FROM rooms UNION ALL SELECT max(seq) FROM members)"
        ).fetchone()[0] or 0
        self._queue: deque[_Submission] = deque()
        self._wake = trio.Event()
        self._stopping = False
        self.batches = 0
        self.changes_written = 0

    # --- what rooms and directories call --------------------------------------------------

    def commit(self, changes: list[Change], reply: ReplySlot | None, value: Any) -> None:
        """Write `changes`; then put `value` into `reply`. In submission order."""
        self._queue.append(_Submission(changes, reply, value))
        self._wake.set()

    def load(self, kind: str) -> list[SavedRoom]:
        rooms = self._db.execute(
            "SELECT room_id, creator, room_info FROM rooms WHERE kind = ? ORDER BY seq", (kind,)
        ).fetchall()
        members: dict[str, list[MemberInfo]] = {}
        for room_id, user_id, name, avatar, push_url in self._db.execute(
            "SELECT room_id, user_id, user_name, user_avatar, push_url FROM members WHERE kind = ? ORDER BY seq",
            (kind,),
        ):
            members.setdefault(room_id, []).append(MemberInfo(user_id, name, avatar, push_url))
        return [SavedRoom(r, c, i, tuple(members.get(r, ()))) for r, c, i in rooms]

    # --- the actor ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[SqliteStore] = trio.TASK_STATUS_IGNORED) -> None:
        self.log.info("store started path={}", self.path)
        task_status.started(self)
        try:
            while True:
                if not self._queue:
                    if self._stopping:
                        return
                    await self._wake.wait()
                    self._wake = trio.Event()
                    continue
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                # shielded: a batch that reached the thread is finished and answered, even when stopping
                with trio.CancelScope(shield=True):
                    if self._write_in_thread:
                        await trio.to_thread.run_sync(self._write, batch)
                    else:
                        self._write(batch)
                        await trio.lowlevel.checkpoint()
                for submission in batch:
                    if submission.reply is not None:
                        submission.reply.put(submission.value)
        finally:
            self._db.close()
            self.log.info("store stopped batches={} changes={}", self.batches, self.changes_written)

    def stop(self) -> None:
        """Write what is queued, then end."""
        self._stopping = True
        self._wake.set()

    def _write(self, batch: list[_Submission]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            for submission in batch:
                for change in submission.changes:
                    self._apply(db, change)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.batches += 1
        self.changes_written += sum(len(s.changes) for s in batch)

    def _apply(self, db: sqlite3.Connection, change: Change) -> None:
        self._seq += 1
        match change:
            case RoomSaved(kind, room_id, creator, room_info):
                db.execute(
                    "INSERT INTO rooms VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, room_id) "
                    "DO UPDATE SET creator = excluded.creator, room_info = excluded.room_info",
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
                db.execute("DELETE FROM members WHERE kind = ? AND room_id = ?", (kind, room_id))
                db.execute("DELETE FROM rooms WHERE kind = ? AND room_id = ?", (kind, room_id))
