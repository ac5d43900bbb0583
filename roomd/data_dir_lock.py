"""One `roomd serve` per data_dir: an OS file lock held for the life of the process.

Two processes on one data_dir would each append revocations, write the
room store and make token secrets behind the other's back. The lock is an
flock on `server.data_dir/roomd.lock`, so the kernel releases it when the
holder dies, `kill -9` included; the file names the holder for the error
message of whoever comes second.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "roomd.lock"
HOLDER_WAIT = 0.5  # seconds to wait for a holder that has locked but not yet written its pid


class DataDirUnavailable(Exception):
    """Another process holds the data_dir, or its lock cannot be taken; the message says what to do."""


@dataclass
class DataDirLock:
    path: Path
    descriptor: int

    def release(self) -> None:
        os.close(self.descriptor)


def lock_data_dir(data_dir: Path, *, setting: str = "server.data_dir") -> DataDirLock:
    """Hold `data_dir/roomd.lock` until `release` or exit; DataDirUnavailable if somebody else holds it."""
    path = data_dir / LOCK_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise DataDirUnavailable(
            f"cannot open the lock file {path}: {e.strerror}; {setting} {data_dir} must be a writable directory"
        ) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(descriptor)
        os.close(descriptor)
        raise DataDirUnavailable(
            f"{setting} {data_dir} is in use by {holder} (lock file {path}); stop it or use another data_dir"
        ) from None
    except OSError as e:
        os.close(descriptor)
        raise DataDirUnavailable(
            f"cannot lock {path}: {e.strerror}; put {setting} on a file system that supports flock"
        ) from None
    _write_holder(descriptor)
    return DataDirLock(path, descriptor)


def _write_holder(descriptor: int) -> None:
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"{os.getpid()} {started}\n".encode("ascii")
    try:
        os.ftruncate(descriptor, 0)
        if os.pwrite(descriptor, text, 0) != len(text):
            os.ftruncate(descriptor, 0)  # half a pid would name the wrong process
    except OSError:
        pass  # the lock is what keeps others out; the text only names the holder in their error


def _holder(descriptor: int) -> str:
    deadline = time.monotonic() + HOLDER_WAIT
    while True:
        pid, _, started = os.pread(descriptor, 200, 0).decode("ascii", "replace").strip().partition(" ")
        if pid.isascii() and pid.isdigit():
            return f"process {pid}" + (f" since {started}" if started else "")
        if time.monotonic() >= deadline:
            return "another process"
        time.sleep(0.05)
