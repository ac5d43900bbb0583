"""roomd's log files: bounded by age and by size, and a full disk never breaks the server.

loguru's file sinks rotate and prune by time only, and a write that fails
there surfaces as an error printed with the whole record. A `RotatingFile`
instead writes `<dir>/<stem>-YYYY-MM-DD-HH.log` (local time), starts a new
file when `log.rotation` has elapsed or when a write would take the file past
its share of the kind's byte budget (`<stem>-YYYY-MM-DD-HH.1.log`, `.2.log`,
...), and deletes files older than `log.retention` and, oldest first,
whatever makes the files of its kind exceed their budget. A write that fails
(ENOSPC, EFBIG, EIO, a read-only or vanished directory) is dropped and
counted in `DROPPED_WRITES`; the next write opens the file again, so logging
resumes by itself once it can. All of this runs on the file's own thread
(a `BackgroundSink`, background.py), never on the thread that logs.

A process out of file descriptors (EMFILE, ENFILE) is when the error file
matters most ("cannot accept connections"), and then no file can be opened.
So the current file is opened when the sink is made, at start, and a
rotation opens the next file before it closes the current one: when that
open fails for want of a descriptor, lines go on to the current file (past
its share of the budget if need be), and the next write tries again.
"""

from __future__ import annotations

import contextlib
import errno
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, TextIO

FILES_PER_BUDGET = 8  # a file holds at most this share of its kind's byte budget
NAME_TIME = "%Y-%m-%d-%H"
# periods are counted from a Monday's local midnight: hourly files start at whole hours,
# daily ones at midnight, weekly ones on Mondays
_PERIOD_ORIGIN = datetime(2000, 1, 3)

Clock = Callable[[], datetime]
Opener = Callable[[Path], BinaryIO]


class DroppedWrites:
    """How many log lines were lost, in this process: to a failing disk or console, or to a full queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # counted by the sinks' threads and, for a full queue, by the thread that logs
        self._count = 0

    def add(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        return self._count


DROPPED_WRITES = DroppedWrites()


def dropped_log_writes() -> int:
    return DROPPED_WRITES.count


def open_for_append(path: Path) -> BinaryIO:
    """Unbuffered, so a write reaches the disk (or fails) when it is made."""
    return open(path, "ab", buffering=0)


def period_start(now: datetime, rotation: timedelta) -> datetime:
    return now - (now - _PERIOD_ORIGIN) % rotation


@dataclass(frozen=True)
class LogFile:
    path: Path
    started: datetime  # from the name
    part: int  # the name's numeric suffix; 0 for none
    size: int
    modified: datetime


class RotatingFile:
    """The writer of one kind of log file, e.g. stem "response"; roomd runs it behind a BackgroundSink."""

    def __init__(
        self,
        directory: Path,
        stem: str,
        *,
        rotation: timedelta,
        retention: timedelta,
        max_total_bytes: int,
        clock: Clock = datetime.now,
        opener: Opener = open_for_append,
        dropped: DroppedWrites = DROPPED_WRITES,
        notices: TextIO | None = None,
    ) -> None:
        self._directory = directory
        self._stem = stem
        self._rotation = rotation
        self._retention = retention
        self._max_total_bytes = max_total_bytes
        self._max_file_bytes = max(max_total_bytes // FILES_PER_BUDGET, 1)
        self._clock = clock
        self._opener = opener
        self._dropped = dropped
        self._notices = notices if notices is not None else sys.stderr
        self._name = re.compile(rf"^{re.escape(stem)}-(\d{{4}}-\d\d-\d\d-\d\d)(?:\.(\d+))?\.log$")
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0
        self._ends_mid_line = False
        self._period_end = datetime.min
        self._last_period: datetime | None = None  # the period this sink last opened a file for
        self._failing = False
        self._dropped_while_failing = 0
        with contextlib.suppress(OSError, ValueError):  # if it fails, the first write tries again and says why
            self._open(self._clock(), 0)

    def write(self, message: str) -> None:
        """Append `message` (whole lines); if that fails it is dropped and counted, never raised.
        A batch larger than a file's share is written in parts of whole lines, each to a file
        with room for it, so that no file and no budget grows past its size by one big batch."""
        for part in _line_parts(message.encode("utf-8", errors="backslashreplace"), self._max_file_bytes):
            self._write_part(part)

    def _write_part(self, data: bytes) -> None:
        try:
            file = self._file_for(self._clock(), len(data))
            if self._ends_mid_line:  # a failed write left half a line behind
                data = b"\n" + data
            _write_all(file, data)
        except (OSError, ValueError) as error:
            self._drop(error)
            return
        self._ends_mid_line = False
        self._size += len(data)
        if self._failing:
            self._failing = False
            self._notice(f"writing {self._stem} log files again; {self._dropped_while_failing} write(s) were dropped")

    def stop(self) -> None:
        """Called when the sink is removed (BackgroundSink.stop, once its queue is written)."""
        self._close()

    def _files(self) -> list[LogFile]:
        """This sink's files in the directory, oldest first; none if it cannot be read."""
        try:
            return self._listed_files()
        except OSError:
            return []

    def _listed_files(self) -> list[LogFile]:
        found: list[LogFile] = []
        for path in list(self._directory.iterdir()):
            match = self._name.match(path.name)
            if match is None:
                continue
            try:
                stat = path.stat()
                started = datetime.strptime(match.group(1), NAME_TIME)
            except (OSError, ValueError):
                continue
            part = int(match.group(2) or 0)
            found.append(LogFile(path, started, part, stat.st_size, datetime.fromtimestamp(stat.st_mtime)))
        found.sort(key=lambda f: (f.started, f.part))
        return found

    # --- opening and rotating ----------------------------------------------------------

    def _file_for(self, now: datetime, incoming: int) -> BinaryIO:
        if self._file is None:
            self._open(now, incoming)
        elif now >= self._period_end or not self._has_room(self._size, incoming):
            try:
                self._open(now, incoming)
            except OSError as error:
                if not _out_of_descriptors(error):
                    raise
                # no descriptor for the next file: the current one takes the line, the next write tries again
        assert self._file is not None
        return self._file

    def _open(self, now: datetime, incoming: int) -> None:
        """Open the file for `now` and `incoming` bytes; only then close the current one."""
        start = period_start(now, self._rotation)
        self._directory.mkdir(parents=True, exist_ok=True)
        path, size = self._path_for(start, incoming)
        file = self._opener(path)
        self._close()
        self._file = file
        previous, self._path = self._path, path
        self._size = size
        self._ends_mid_line = size > 0 and not _ends_with_newline(path)
        self._period_end = start + self._rotation
        self._last_period = start
        if path != previous:
            self._prune(now)

    def _has_room(self, size: int, incoming: int) -> bool:
        """Whether a file of `size` bytes takes `incoming` more; an empty one takes anything."""
        return size == 0 or size + incoming <= self._max_file_bytes

    def _path_for(self, start: datetime, incoming: int) -> tuple[Path, int]:
        """The file for the period starting at `start`, and its size: the newest file of that
        hour while it has room for `incoming` bytes, unless this sink has rotated away from it;
        else a new one."""
        stamp = start.strftime(NAME_TIME)
        try:
            listed = self._listed_files()
        except OSError as error:
            if _out_of_descriptors(error):
                raise  # not "no files": the next one would be named and sized wrongly
            listed = []
        same_hour = [f for f in listed if f.started.strftime(NAME_TIME) == stamp]
        if not same_hour:
            return self._directory / f"{self._stem}-{stamp}.log", 0
        newest = same_hour[-1]
        rotated_by_time = self._last_period is not None and self._last_period != start
        if self._has_room(newest.size, incoming) and not rotated_by_time:
            return newest.path, newest.size
        return self._directory / f"{self._stem}-{stamp}.{newest.part + 1}.log", 0

    def _prune(self, now: datetime) -> None:
        """Delete files past retention, then the oldest while the rest and a full current file
        would exceed the budget."""
        expired_before = now - self._retention
        kept: list[LogFile] = []
        for log_file in self._files():
            if log_file.path == self._path:
                continue
            if log_file.modified < expired_before:
                _remove(log_file.path)
            else:
                kept.append(log_file)
        total = sum(f.size for f in kept) + self._max_file_bytes
        for log_file in kept:
            if total <= self._max_total_bytes:
                break
            _remove(log_file.path)
            total -= log_file.size

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError, ValueError):
                file.close()

    # --- failures ------------------------------------------------------------------------

    def _drop(self, error: OSError | ValueError) -> None:
        self._dropped.add()
        self._close()  # the next write opens the file again
        if self._failing:
            self._dropped_while_failing += 1
            return
        self._failing = True
        self._dropped_while_failing = 1
        reason = errno.errorcode.get(error.errno, "") if isinstance(error, OSError) and error.errno else ""
        self._notice(
            f"cannot write {self._stem} log file in {self._directory} "
            f"({reason or type(error).__name__}); dropping its lines until it works again"
        )

    def _notice(self, text: str) -> None:
        """A line about the sink itself, never about what was being logged."""
        try:
            self._notices.write(f"roomd: {text}\n")
            self._notices.flush()
        except (OSError, ValueError):
            pass


def _line_parts(data: bytes, most: int) -> list[bytes]:
    """`data` cut after line ends into parts of at most `most` bytes (a longer line is a part)."""
    if len(data) <= most:
        return [data]
    parts: list[bytes] = []
    start = 0
    while len(data) - start > most:
        cut = data.rfind(b"\n", start, start + most) + 1
        if cut <= start:  # one line longer than `most`: it goes whole
            cut = data.find(b"\n", start + most) + 1 or len(data)
        parts.append(data[start:cut])
        start = cut
    if start < len(data):
        parts.append(data[start:])
    return parts


def _write_all(file: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = file.write(view)
        if written is None:  # a non-blocking file with no room: treat as a failed write
            raise OSError(errno.EAGAIN, "write would block")
        view = view[written:]


def _out_of_descriptors(error: OSError) -> bool:
    return error.errno in (errno.EMFILE, errno.ENFILE)


def _ends_with_newline(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"
    except OSError:
        return True


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
