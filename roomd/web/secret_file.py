"""The token secret kept in `server.data_dir/token_secret`, made once at start.

A login token is only as good as its HMAC key: a half-written, empty or
truncated file must stop the server, never become the key. So the file is
made whole or not at all (temp file, fsync, rename, fsync of the directory)
and checked every time it is read.
"""

from __future__ import annotations

import errno
import os
import secrets
import tempfile
from pathlib import Path

SECRET_FILE = "token_secret"
MIN_SECRET_BYTES = 32
MAX_SECRET_BYTES = 1024
NEW_SECRET_BYTES = 32  # written as 64 hex characters


class SecretFileError(Exception):
    """The secret file is missing, corrupt or cannot be made; the message says what to do."""


def ensure_secret(path: Path) -> bytes:
    """The secret in `path`, made first if there is no such file."""
    try:
        return read_secret(path)
    except FileNotFoundError:
        pass
    return make_secret(path)


def read_secret(path: Path) -> bytes:
    """The secret in `path`; FileNotFoundError if there is none, SecretFileError if it is unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SecretFileError(
            f"cannot read the token secret {path}: {e.strerror}; fix its permissions or remove it"
        ) from None
    secret = raw.strip()
    usable = MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES and all(0x21 <= b <= 0x7E for b in secret)
    if not usable:
        raise SecretFileError(
            f"the token secret {path} is corrupt ({len(raw)} bytes); remove it to make a new one"
        )
    return secret


def make_secret(path: Path) -> bytes:
    """Write a new secret to `path` (mode 0600) whole or not at all; the caller holds the data_dir lock."""
    secret = secrets.token_hex(NEW_SECRET_BYTES).encode("ascii")
    directory = path.parent
    temporary: str | None = None
    renamed = False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            _write_all(descriptor, secret)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.rename(temporary, path)
        renamed = True
        _fsync_directory(directory)
    except OSError as e:
        for leftover in (temporary, path if renamed else None):
            if leftover is not None:
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
        reason = errno.errorcode.get(e.errno or 0, "error")
        raise SecretFileError(
            f"cannot make the token secret {path}: {e.strerror} ({reason}); "
            "free space or fix permissions of server.data_dir, or set auth.token_secret"
        ) from None
    return secret


def _write_all(descriptor: int, data: bytes) -> None:
    # a short write is how a full disk or a file-size limit shows first; the next write raises
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
