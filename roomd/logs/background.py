"""Log sinks that never make the logging thread wait: each sink writes on a thread of its own.

loguru calls a sink on the thread that logs, and in roomd that is the trio
thread: a write to a slow or stalled disk (or a console piped into a slow
reader), a rotation or a deletion of old files there would stall every
request. A `BackgroundSink` only queues the line and wakes its thread,
which hands the lines to the real sink in order. The queue is bounded: a
line that would take it past `max_pending_bytes` is dropped and counted in
`DROPPED_WRITES` (`roomd_log_writes_dropped_total`), so a client that makes
roomd log a lot can cost log lines, never a stalled server or its memory.

`drain()` waits until every line queued so far is written; `stop()`, which
loguru calls when the sink is removed (at exit too: loguru removes its
sinks then), drains the queue before it stops the real sink.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import Protocol, TextIO

from roomd.logs.files import DROPPED_WRITES, DroppedWrites

MAX_PENDING_BYTES = 8 << 20  # per sink: about 5 s of response lines at a few thousand requests a second
RECORD_OVERHEAD = 64  # bytes a queued line costs beyond its text: the str object and its slot in the queue
STOP_TIMEOUT = 30.0  # seconds stop() waits for the queue to be written: a hung disk must not hang the exit
NOTICE_EVERY = 1.0  # seconds between two notices about dropped lines


class Writer(Protocol):
    def write(self, message: str) -> None: ...


class BackgroundSink:
    """A loguru sink (it has `write`) that hands each message to `target.write` on its own thread.

    `target.write` must not raise (roomd's Console and RotatingFile drop and
    count a failed write themselves); if it does, the line is counted as
    dropped and the thread goes on. No method is named `flush`: loguru would
    call it after every write.
    """

    def __init__(
        self,
        target: Writer,
        *,
        name: str,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        dropped: DroppedWrites = DROPPED_WRITES,
        notices: TextIO | None = None,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self._target = target
        self._name = name
        self._max_pending_bytes = max_pending_bytes
        self._dropped = dropped
        self._notices = notices
        self._stop_timeout = stop_timeout
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)  # the thread waits here for lines
        self._progress = threading.Condition(self._lock)  # drain() waits here for the thread
        self._pending: deque[str] = deque()
        self._pending_bytes = 0  # of the lines queued or being written
        self._queued = 0  # lines accepted since the start
        self._written = 0  # of those, the lines handed to the target
        self._dropped_unreported = 0
        self._last_notice = -NOTICE_EVERY
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"roomd-log-{name}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        """loguru names the sink's handler with it."""
        return self._name

    def write(self, message: str) -> None:
        """Queue `message`, or drop and count it when the queue is full; never blocks on I/O."""
        text = str(message)  # not loguru's Message: its record would keep an exception's frames alive
        cost = len(text) + RECORD_OVERHEAD
        with self._lock:
            # an empty queue takes any line, so no line is dropped for its size alone
            accepted = not self._stopping and (
                not self._pending_bytes or self._pending_bytes + cost <= self._max_pending_bytes
            )
            if accepted:
                self._pending.append(text)
                self._pending_bytes += cost
                self._queued += 1
                self._has_work.notify()
            else:
                self._dropped_unreported += 1
        if not accepted:
            self._dropped.add()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every line queued before this call is written; False if `timeout` passed first.

        It blocks: call it from tests, tools and the process's exit, never on the trio thread.
        """
        with self._lock:
            target = self._queued
            return self._progress.wait_for(lambda: self._written >= target or not self._thread.is_alive(), timeout)

    def stop(self) -> None:
        """Called by loguru when the sink is removed: write what is queued, end the thread, stop the target."""
        with self._lock:
            self._stopping = True
            self._has_work.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(self._stop_timeout)
        if self._thread.is_alive():
            return  # the target is stuck in a write; it stays open for the thread
        stop = getattr(self._target, "stop", None)
        if callable(stop):
            stop()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._has_work.wait()
                if not self._pending:
                    notice = self._dropped_notice(final=True)
                    self._progress.notify_all()
                    break
                batch, self._pending = self._pending, deque()
            for text in batch:
                try:
                    self._target.write(text)
                except Exception:  # a bug in the target must not end the thread and silence the log
                    self._dropped.add()
            with self._lock:
                self._pending_bytes -= sum(len(text) + RECORD_OVERHEAD for text in batch)
                self._written += len(batch)
                self._progress.notify_all()
                notice = self._dropped_notice(final=False)
            self._say(notice)  # outside the lock: the notice stream may be as slow as the target
        self._say(notice)

    def _dropped_notice(self, *, final: bool) -> str | None:
        """A line about lines dropped for a full queue: at most one every NOTICE_EVERY seconds."""
        now = time.monotonic()
        if not self._dropped_unreported or (not final and now - self._last_notice < NOTICE_EVERY):
            return None
        count, self._dropped_unreported = self._dropped_unreported, 0
        self._last_notice = now
        return f"{self._name} log lines came faster than they could be written; {count} line(s) dropped"

    def _say(self, notice: str | None) -> None:
        if notice is None:
            return
        notices = self._notices if self._notices is not None else sys.stderr
        try:
            notices.write(f"roomd: {notice}\n")
            notices.flush()
        except (OSError, ValueError):
            pass
