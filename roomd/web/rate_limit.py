"""Token buckets that limit how fast one client address or one userID may create rooms, and how
fast one client address may be handed credentials (userSigs, login tokens, console sessions).

A bucket holds up to `burst` tokens and refills at `rate` per second; a
creation takes one. Buckets are kept for at most `max_keys` keys, least
recently used first out: a forgotten bucket is a full one, so the bound on
memory can only make the limit more lenient, never refuse anybody wrongly.
A creation the directory refuses before asking IM gives its token back.
Credentials are limited because each one costs what an anonymous client
chooses to spend: a signature, a WeChat call, and, once logged out, a
revocation roomd keeps until the token expires.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

from roomd.client_address import limit_key

MAX_KEYS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, *, rate: float, burst: int, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def wait_needed(self, key: str, now: float) -> float:
        """Seconds until `key` may take a token (0: it may now)."""
        tokens = self._refilled(key, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: str, now: float) -> None:
        bucket = _Bucket(self._refilled(key, now) - 1, now)
        self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def refund(self, key: str, now: float) -> None:
        """Give back a token `take` took, never filling the bucket above `burst`."""
        bucket = self._buckets.get(key)
        if bucket is not None:  # a forgotten bucket is full already
            bucket.tokens = min(float(self.burst), self._refilled(key, now) + 1)
            bucket.updated = now

    def _refilled(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.burst)
        return min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)

    def __len__(self) -> int:
        return len(self._buckets)


class CreationLimits:
    """`[limits]`: room creations per client address and per userID."""

    def __init__(self, *, per_address: TokenBuckets, per_user: TokenBuckets) -> None:
        self.per_address = per_address
        self.per_user = per_user

    def refusal(self, address: str, user_id: str, now: float) -> str | None:
        """None and a token taken from each bucket, or why the creation must wait."""
        address = limit_key(address)
        checks = [(b, k) for b, k in ((self.per_address, address), (self.per_user, user_id)) if b.enabled]
        for buckets, key in checks:
            wait = buckets.wait_needed(key, now)
            if wait > 0:
                who = f"client {address}" if buckets is self.per_address else f"user {user_id}"
                return _too_fast(f"{who} creates rooms", buckets, wait)
        for buckets, key in checks:
            buckets.take(key, now)
        return None

    def refund(self, address: str, user_id: str, now: float) -> None:
        """Give back the tokens `refusal` took, for a creation that did not happen."""
        address = limit_key(address)
        for buckets, key in ((self.per_address, address), (self.per_user, user_id)):
            if buckets.enabled:
                buckets.refund(key, now)


class LoginLimit:
    """`[limits] login_*`: userSigs, tokens and console logins handed out per client address."""

    def __init__(self, per_address: TokenBuckets) -> None:
        self.per_address = per_address

    def refusal(self, address: str, now: float) -> str | None:
        """None and a token taken, or why the credential must wait."""
        why_not = self.waiting(address, now)
        if why_not is None and self.per_address.enabled:
            self.per_address.take(limit_key(address), now)
        return why_not

    def waiting(self, address: str, now: float) -> str | None:
        """Why `address` must wait before its next credential or guess, taking nothing; None if it need not."""
        if not self.per_address.enabled:
            return None
        address = limit_key(address)
        wait = self.per_address.wait_needed(address, now)
        return _too_fast(f"client {address} asks for credentials", self.per_address, wait) if wait > 0 else None


def _too_fast(what: str, buckets: TokenBuckets, wait: float) -> str:
    retry = math.ceil(round(wait * 10, 6)) / 10  # rounded up: never early
    return f"{what} faster than {buckets.rate:g} per second (bursts of {buckets.burst}); retry in {retry:.1f} s"
