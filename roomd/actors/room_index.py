"""Summaries of one kind's rooms in creation order, for listing without asking rooms.

Rooms publish a snapshot here whenever their member list or info changes
(never on heartbeats). Rooms with at least one member, and the others, are
kept in sorted lists of creation sequence numbers, so a page costs
O(log n + page size) however many rooms are skipped or exist.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import trio
from sortedcontainers import SortedList

from roomd.actors.messages import RoomSnapshot


class RoomIndex:
    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self._clock = clock
        self._next_seq = itertools.count()
        self._seq_by_id: dict[str, int] = {}
        self._by_seq: dict[int, RoomSnapshot] = {}
        self._listed = SortedList()  # creation seqs of rooms with at least one member
        self._waiting = SortedList()  # ... and of the others
        self._started: dict[int, float] = {}  # seq -> trio time the room was first reported
        self.member_count = 0  # members across every room
        self.audience_count = 0  # audiences across every room

    def upsert(self, snapshot: RoomSnapshot) -> None:
        seq = self._seq_by_id.get(snapshot.room_id)
        if seq is None:
            seq = next(self._next_seq)
            self._seq_by_id[snapshot.room_id] = seq
            self._started[seq] = self._clock()
        previous = self._by_seq.get(seq)
        was_listed = previous is not None and bool(previous.members)
        self.member_count += len(snapshot.members) - (len(previous.members) if previous else 0)
        self.audience_count += snapshot.audience_count - (previous.audience_count if previous else 0)
        self._by_seq[seq] = snapshot
        if previous is None:
            (self._listed if snapshot.members else self._waiting).add(seq)
        elif snapshot.members and not was_listed:
            self._waiting.remove(seq)
            self._listed.add(seq)
        elif not snapshot.members and was_listed:
            self._listed.remove(seq)
            self._waiting.add(seq)

    def remove(self, room_id: str) -> None:
        seq = self._seq_by_id.pop(room_id, None)
        if seq is None:
            return
        snapshot = self._by_seq.pop(seq)
        del self._started[seq]
        self.member_count -= len(snapshot.members)
        self.audience_count -= snapshot.audience_count
        (self._listed if snapshot.members else self._waiting).remove(seq)

    def page(self, index: int, count: int) -> list[RoomSnapshot]:
        """Rooms with members, in creation order: skip `index`, return at most `count`."""
        return [self._by_seq[seq] for seq in self._listed.islice(index, index + count)]

    @property
    def room_count(self) -> int:
        return len(self._seq_by_id)

    @property
    def listed_count(self) -> int:
        return len(self._listed)

    def after(self, cursor: int, count: int, *, state: str | None) -> list[tuple[int, RoomSnapshot, float]]:
        """Up to `count` rooms made after the one at `cursor` (-1: from the first), in creation order,
        `state` "active" or "waiting" or either (None): (seq, snapshot, trio time it started) each."""
        if state == "active":
            seqs = self._listed.irange(minimum=cursor + 1)
        elif state == "waiting":
            seqs = self._waiting.irange(minimum=cursor + 1)
        else:
            seqs = heapq.merge(self._listed.irange(minimum=cursor + 1), self._waiting.irange(minimum=cursor + 1))
        return [(seq, self._by_seq[seq], self._started[seq]) for seq in itertools.islice(seqs, count)]

    def get(self, room_id: str) -> RoomSnapshot | None:
        """The room's latest snapshot, listed or not."""
        seq = self._seq_by_id.get(room_id)
        return None if seq is None else self._by_seq.get(seq)
