"""Writing small files so that a crash or a full disk never leaves half of one behind.

The token secret and the revocation log both need it: a file is replaced
whole (temporary file, fsync, rename, fsync of the directory) or appended
to with a line that is either all on disk or cut off again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_all(descriptor: int, data: bytes) -> None:
    """Write every byte; a short write is how a full disk or a file-size limit shows first,
    and the next write raises."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_durably(path: Path, data: bytes) -> None:
    """`path` holds `data` (mode 0600), or is as it was: no temporary file is left behind."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def append_durably(path: Path, data: bytes) -> None:
    """Append `data` and fsync; when that fails, cut the file back so no half line stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(descriptor).st_size
        try:
            write_all(descriptor, data)
            os.fsync(descriptor)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, size)
            raise
    finally:
        os.close(descriptor)
