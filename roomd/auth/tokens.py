"""Login tokens: stateless, so they survive restarts and work on every node.

A token is `<expires>.<nonce>.<mac>` where mac = HMAC-SHA256(secret,
userID, expires and nonce), URL-safe base64 without padding; the nonce
keeps two logins in one second apart, so logging out of one leaves the
other valid. Tokens are parsed strictly, so each token has exactly one
spelling, and a revocation is recorded by the MAC itself: no other way of
writing a revoked token gets past logout. The secret is `auth.token_secret`,
or the one `roomd serve` makes at start in `server.data_dir/token_secret`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from roomd.auth.revocations import LEGACY_ID_CHARS, REVOKED_FILE, RevocationLog, RevocationNotDurable
from roomd.auth.secret_file import SECRET_FILE, SecretFileError, read_secret
from roomd.config import Settings

__all__ = ["IssuedToken", "ParsedToken", "RevocationNotDurable", "TokenBook", "parse_token"]

_EXPIRES = re.compile(r"[1-9][0-9]{0,11}")  # [0-9], not \d: only ASCII digits
_NONCE = re.compile(r"[0-9a-f]{8}")
_MAC = re.compile(r"[A-Za-z0-9_-]{43}")
MALFORMED = "the token is malformed: it must be <expires>.<nonce>.<mac> exactly as login answered it"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires: int


@dataclass(frozen=True)
class ParsedToken:
    expires: int
    nonce: str
    mac: bytes

    @property
    def token_id(self) -> str:
        """What a revocation records: the MAC, which no two tokens share."""
        return self.mac.hex()


def parse_token(token: str) -> ParsedToken | str:
    """The parts of `token`, or why it is not a token (then it is refused, never an exception)."""
    if not token.isascii():
        return "the token is malformed: it holds characters that are not ASCII"
    parts = token.split(".")
    if len(parts) != 3:
        return MALFORMED
    expires_text, nonce, mac_text = parts
    if not _EXPIRES.fullmatch(expires_text) or not _NONCE.fullmatch(nonce) or not _MAC.fullmatch(mac_text):
        return MALFORMED
    try:
        mac = base64.urlsafe_b64decode(mac_text + "=")
    except (binascii.Error, ValueError):
        return MALFORMED
    if _encode_mac(mac) != mac_text:  # the last character carries 2 unused bits: only zeros are canonical
        return MALFORMED
    return ParsedToken(int(expires_text), nonce, mac)


class Revocations(Protocol):
    """Where logouts are kept: a file of this process (RevocationLog), or Redis for a cluster."""

    has_legacy_ids: bool

    def __contains__(self, token_id: str) -> bool: ...

    async def add(self, token_id: str, expires: int, *, now: int) -> None:
        """Revoke `token_id` until `expires`; return once that is durable (RevocationNotDurable if not)."""

    async def keep_written(self, clock: Callable[[], float]) -> None:
        """Run until cancelled: make the revocations whose `add` was not durable durable, trying again
        until they are, and once more when cancelled (bounded)."""


class TokenBook:
    def __init__(
        self,
        secret: bytes | None,
        *,
        ttl: int,
        revocations: Revocations | None = None,
        no_secret: str = "no token secret was given",
    ) -> None:
        """`secret` None: every issue or check raises SecretFileError(`no_secret`)."""
        if secret is not None and not secret:
            raise ValueError("the token secret is empty; tokens signed with it would be forgeable")
        self._secret = secret
        self._no_secret = no_secret
        self._ttl = ttl
        self._revoked: Revocations = revocations if revocations is not None else RevocationLog(None, now=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBook:
        """The book for `settings`, with the secret `roomd serve` made at start.

        A corrupt secret file is a SecretFileError here. A missing one (roomd
        embedded without `roomd serve`) is a SecretFileError at the first
        token issued or checked, so embedders that never use tokens need none.
        """
        data_dir = Path(settings.server.data_dir)
        secret: bytes | None = None
        path = data_dir / SECRET_FILE
        if settings.auth.token_secret:
            secret = settings.auth.token_secret.encode("utf-8")
        else:
            with contextlib.suppress(FileNotFoundError):
                secret = read_secret(path)
        revocations = RevocationLog(data_dir / REVOKED_FILE, now=int(time.time()))
        return cls(
            secret,
            ttl=settings.auth.token_ttl,
            revocations=revocations,
            no_secret=f"the token secret {path} does not exist: `roomd serve` makes it at start "
            "(roomd.auth.secret_file.ensure_secret); make it so, or set auth.token_secret",
        )

    def issue(self, user_id: str, *, now: int) -> IssuedToken:
        expires = now + self._ttl
        nonce = secrets.token_hex(4)
        return IssuedToken(f"{expires}.{nonce}.{_encode_mac(self._mac(user_id, expires, nonce))}", expires)

    def check(self, user_id: str, token: str, *, now: int) -> str | None:
        """None when `token` is a live token of `user_id`; else why not."""
        parsed = parse_token(token)
        if isinstance(parsed, str):
            return parsed
        if not hmac.compare_digest(parsed.mac, self._mac(user_id, parsed.expires, parsed.nonce)):
            return f"the token was not issued to {user_id}"
        if parsed.expires < now:
            return "the token has expired; log in again"
        if parsed.token_id in self._revoked or (self._revoked.has_legacy_ids and _legacy_id(token) in self._revoked):
            return "the token was revoked by logout"
        return None

    async def revoke(self, token: str, *, now: int) -> None:
        """Refuse `token` from now on; return once that is on disk (RevocationNotDurable if it is not:
        the token is refused all the same, and keep_revocations_written makes it durable later).

        `token` must have passed `check`: a malformed one is a ValueError.
        """
        parsed = parse_token(token)
        if isinstance(parsed, str):
            raise ValueError(f"cannot revoke: {parsed}")
        await self._revoked.add(parsed.token_id, parsed.expires, now=now)

    async def keep_revocations_written(self, clock: Callable[[], float]) -> None:
        """Run until cancelled (the server stopping): retry revocations that `revoke` could not make
        durable until they are, and try once more when cancelled. `clock`: wall-clock seconds."""
        await self._revoked.keep_written(clock)

    def _mac(self, user_id: str, expires: int, nonce: str) -> bytes:
        if self._secret is None:
            raise SecretFileError(self._no_secret)
        message = f"{user_id}\n{expires}\n{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()


def _encode_mac(mac: bytes) -> str:
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def _legacy_id(token: str) -> str:
    """How versions before strict parsing recorded a revocation: a digest of the token text."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()[:LEGACY_ID_CHARS]
