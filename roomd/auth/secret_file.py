"""The token secret kept in `server.data_dir/token_secret`, made once at start.

A login token is only as good as its HMAC key: a half-written, empty or
truncated file must stop the server, never become the key. So the file is
made whole or not at all (temp file, fsync, rename, fsync of the directory)
and checked every time it is read. roomd makes every secret it keeps the
same way (`new_secret`: 64 lowercase hex characters, here and in Redis for
a cluster), so a kept secret of any other form is corrupt, a cut-short one
included; `made_secret` is that check. A secret the operator gives
(`auth.token_secret`) is not one roomd made, and is not held to it.
"""

from __future__ import annotations

import contextlib
import errno
import re
import secrets
from pathlib import Path

from roomd.durable_files import replace_durably

SECRET_FILE = "token_secret"
NEW_SECRET_BYTES = 32  # written as 64 hex characters
_MADE = re.compile(rb"[0-9a-f]{%d}" % (2 * NEW_SECRET_BYTES))


class SecretFileError(Exception):
    """The secret file is missing, corrupt or cannot be made; the message says what to do."""


def new_secret() -> bytes:
    """A fresh random secret, in the one form roomd keeps secrets in."""
    return secrets.token_hex(NEW_SECRET_BYTES).encode("ascii")


def made_secret(raw: bytes) -> bytes | None:
    """The secret `raw` holds (surrounding whitespace aside) when it has the form `new_secret` makes;
    None when it has not (empty, cut short, grown, not hex), and then it must not become a key."""
    secret = raw.strip()
    return secret if _MADE.fullmatch(secret) else None


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
        if path.exists() and not path.is_file():  # a directory, or a FIFO whose read would never end
            raise SecretFileError(f"the token secret {path} is not a regular file; remove it to make a new one")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SecretFileError(
            f"cannot read the token secret {path}: {e.strerror}; fix its permissions or remove it"
        ) from None
    secret = made_secret(raw)
    if secret is None:
        raise SecretFileError(f"the token secret {path} is corrupt ({len(raw)} bytes); remove it to make a new one")
    return secret


def make_secret(path: Path) -> bytes:
    """Write a new secret to `path` (mode 0600) whole or not at all; the caller holds the data_dir
    lock and has found no such file."""
    secret = new_secret()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_durably(path, secret)
    except OSError as e:
        with contextlib.suppress(OSError):
            path.unlink()  # renamed, but its directory entry may not be on disk: make it again next time
        reason = errno.errorcode.get(e.errno or 0, "error")
        raise SecretFileError(
            f"cannot make the token secret {path}: {e.strerror} ({reason}); "
            "free space or fix permissions of server.data_dir, or set auth.token_secret"
        ) from None
    return secret
