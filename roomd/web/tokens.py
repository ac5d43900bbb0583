"""Login tokens: stateless, so they survive restarts and work on every node.

A token is `<expires>.<nonce>.<mac>` where mac = HMAC-SHA256(secret,
userID, expires and nonce), URL-safe base64; the nonce keeps two logins in
one second apart, so logging out of one leaves the other valid. The secret is `auth.token_secret`, or one made
once and kept in `server.data_dir/token_secret`. Logging out records the
token's digest until the token would have expired, in
`server.data_dir/revoked_tokens`, so a restart keeps it revoked.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from roomd.config import Settings

SECRET_FILE = "token_secret"
REVOKED_FILE = "revoked_tokens"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires: int


class TokenBook:
    def __init__(
        self, secret: bytes | Callable[[], bytes], *, ttl: int, revoked_path: Path | None = None
    ) -> None:
        self._secret_source = secret
        self._ttl = ttl
        self._revoked_path = revoked_path
        self._revoked: dict[str, int] = {}  # token digest -> expiry
        if revoked_path is not None and revoked_path.exists():
            for line in revoked_path.read_text().splitlines():
                digest, _, expires = line.partition(" ")
                if expires.isdigit():
                    self._revoked[digest] = int(expires)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBook:
        data_dir = Path(settings.server.data_dir)
        if settings.auth.token_secret:
            secret: bytes | Callable[[], bytes] = settings.auth.token_secret.encode("utf-8")
        else:
            secret = functools.partial(_stored_secret, data_dir / SECRET_FILE)  # made on first use
        return cls(secret, ttl=settings.auth.token_ttl, revoked_path=data_dir / REVOKED_FILE)

    def issue(self, user_id: str, *, now: int) -> IssuedToken:
        expires = now + self._ttl
        nonce = secrets.token_hex(4)
        return IssuedToken(f"{expires}.{nonce}.{self._mac(user_id, expires, nonce)}", expires)

    def check(self, user_id: str, token: str, *, now: int) -> str | None:
        """None when `token` is a live token of `user_id`; else why not."""
        expires_text, nonce, mac = (token.split(".") + ["", ""])[:3]
        if not expires_text.isdigit() or not nonce or not mac or token.count(".") != 2:
            return "the token is malformed"
        if not hmac.compare_digest(mac, self._mac(user_id, int(expires_text), nonce)):
            return f"the token was not issued to {user_id}"
        if int(expires_text) < now:
            return "the token has expired; log in again"
        if _digest(token) in self._revoked:
            return "the token was revoked by logout"
        return None

    def revoke(self, token: str, *, now: int) -> None:
        expires_text = token.partition(".")[0]
        expires = int(expires_text) if expires_text.isdigit() else now
        self._revoked = {d: e for d, e in self._revoked.items() if e >= now}
        self._revoked[_digest(token)] = expires
        if self._revoked_path is not None:
            self._revoked_path.parent.mkdir(parents=True, exist_ok=True)
            text = "".join(f"{d} {e}\n" for d, e in self._revoked.items())
            temporary = self._revoked_path.with_suffix(".tmp")
            temporary.write_text(text)
            temporary.replace(self._revoked_path)

    @functools.cached_property
    def _secret(self) -> bytes:
        source = self._secret_source
        return source if isinstance(source, bytes) else source()

    def _mac(self, user_id: str, expires: int, nonce: str) -> str:
        message = f"{user_id}\n{expires}\n{nonce}".encode("utf-8")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


def _stored_secret(path: Path) -> bytes:
    """The secret kept in `path`, made (readable by the owner only) on first use."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode("ascii")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(secret)
    return secret
