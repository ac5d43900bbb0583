"""Give memory back to the OS after connections were dropped with large replies unsent.

Hundreds of clients that never read their replies hold a large reply each
until the write timeout drops them. When they go they leave behind:
reference cycles (cancelled tasks and frames, protocol objects) that
Python's collector only finds once enough new allocations trigger it;
freed blocks that glibc keeps in its heap; and a few objects made while
they were held that outlive them. Measured with bench/never_reading.py
(500 such connections, 250 KiB replies): RSS 64 MB before, 360 MB during,
and still about 300 MB once they were all gone. A full `gc.collect()` (the
cycles are old enough to sit in the oldest generation) then `malloc_trim(0)`
brings it back to 75 MB. The pause: 50-100 ms at 40 rooms, 130 ms at 12,000
members.

What stays after that is memory pinned by objects that outlive the
connections: with Python's small-object allocator (pymalloc) one live
object keeps its whole 1 MiB arena, with glibc's (`PYTHONMALLOC=malloc`)
only its 4 KiB page. Found by walking the arenas after 1,000 dropped
connections: the names CPython's type attribute cache holds (a dropped
connection's tasks end in an exception group of Cancelled, and `split`
looks up `derive` under a freshly made name: about 300 of them, spread
over 20 arenas), the finished cancel scopes of the connections' read,
idle and write timers that trio keeps in its deadline heap until those
deadlines pass (up to 1,000 of them), and what the rest of roomd made
meanwhile (metric values, log lines, periodic tasks' sleeps). So after
collecting, the type cache is cleared too, and the heap is trimmed again
2 and 6 s later and once the longest of those timers has run out. With
glibc's allocator 1,000 connections then leave +4 % five seconds after the
last went (+6 % without these two steps; medians of 3); with pymalloc
+27 %, in arenas that the rest of roomd pins.

`MemoryReturn` adds up the bytes of the writes that were abandoned; once
they reach `threshold` and no connection has been dropped for a second (the
wave is over), it collects and trims, at most every `min_gap` seconds. A
client that goes away in the middle of a small reply costs nothing here.
Without glibc (no `malloc_trim`) it only collects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import time
from collections.abc import Callable

import trio
from loguru import logger

THRESHOLD_BYTES = 16 * 1024 * 1024
log = logger.bind(actor="http")


def follow_up_trims(longest_timer: float) -> tuple[float, ...]:
    """When to trim again after giving back (seconds after): soon, then once the dropped
    connections' timers (the longest of them `longest_timer` seconds) have all run out."""
    return (2.0, 6.0, longest_timer + 4.0) if longest_timer + 4.0 > 6.0 else (2.0, 6.0)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] | None = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    return trim


class MemoryReturn:
    def __init__(
        self,
        threshold: int = THRESHOLD_BYTES,
        min_gap: float = 2.0,
        follow_ups: tuple[float, ...] = follow_up_trims(10.0),
    ) -> None:
        self.threshold = threshold
        self.min_gap = min_gap
        self.follow_ups = follow_ups
        self._unsent = 0
        self._connections = 0
        self._last_drop = 0.0
        self._last_give_back = -min_gap
        self._trim = _malloc_trim()

    def reply_dropped(self, unsent: int) -> None:
        self._unsent += unsent
        self._connections += 1
        self._last_drop = trio.current_time()

    @property
    def due(self) -> bool:
        return self._unsent >= self.threshold and trio.current_time() - self._last_drop >= 1.0

    async def run(self) -> None:
        trims_due: list[float] = []
        while True:
            await trio.sleep(1.0)
            now = trio.current_time()
            if self.due and now - self._last_give_back >= self.min_gap:
                self.give_back()
                self._last_give_back = now
                trims_due = [now + after for after in self.follow_ups]
            elif trims_due and now >= trims_due[0]:
                del trims_due[0]
                self.trim_again()

    def give_back(self) -> None:
        started = time.perf_counter()
        found = gc.collect()
        sys._clear_type_cache()  # refilled on demand; frees the names it held
        if self._trim is not None:
            self._trim(0)
        log.info(
            "{} connections dropped with {:.0f} MB of replies unsent: freed {} unreachable objects{} in {:.0f} ms",
            self._connections,
            self._unsent / 1e6,
            found,
            " and trimmed the heap" if self._trim else "",
            (time.perf_counter() - started) * 1000,
        )
        self._unsent = self._connections = 0

    def trim_again(self) -> None:
        """What the dropped connections' timers held is freed as they run out: give that back too."""
        if self._trim is None:
            return
        started = time.perf_counter()
        self._trim(0)
        log.debug("trimmed the heap again in {:.1f} ms", (time.perf_counter() - started) * 1000)
