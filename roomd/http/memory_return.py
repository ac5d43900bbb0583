"""Give memory back to the OS after connections were dropped with large replies unsent.

Hundreds of clients that never read their replies hold a large reply each
until the write timeout drops them. When they go they leave two things
behind: reference cycles (cancelled tasks and frames, protocol objects)
that Python's collector only finds once enough new allocations trigger it,
and freed blocks that glibc keeps in its heap. Measured with
bench/never_reading.py (500 such connections, 250 KiB replies): RSS 64 MB
before, 360 MB during, and still about 300 MB once they were all gone.
A full `gc.collect()` (the cycles are old enough to sit in the oldest
generation) then `malloc_trim(0)` brings it back to 75 MB: what is left is
pymalloc arenas pinned by a few live objects, and it does not grow from one
attack to the next. The pause: 50-100 ms at 40 rooms, 130 ms at 12,000
members.

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
import time
from collections.abc import Callable

import trio
from loguru import logger

THRESHOLD_BYTES = 16 * 1024 * 1024
log = logger.bind(actor="http")


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] | None = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    return trim


class MemoryReturn:
    def __init__(self, threshold: int = THRESHOLD_BYTES, min_gap: float = 2.0) -> None:
        self.threshold = threshold
        self.min_gap = min_gap
        self._unsent = 0
        self._connections = 0
        self._last_drop = 0.0
        self._trim = _malloc_trim()

    def reply_dropped(self, unsent: int) -> None:
        self._unsent += unsent
        self._connections += 1
        self._last_drop = trio.current_time()

    @property
    def due(self) -> bool:
        return self._unsent >= self.threshold and trio.current_time() - self._last_drop >= 1.0

    async def run(self) -> None:
        while True:
            await trio.sleep(1.0)
            if self.due:
                self.give_back()
                await trio.sleep(self.min_gap)

    def give_back(self) -> None:
        started = time.perf_counter()
        found = gc.collect()
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
