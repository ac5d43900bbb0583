"""Signed live streaming URLs: push URLs, low-latency play URLs, mixed play URLs.

The anti-leech signature is txSecret = md5(key + streamName + txTime) with
txTime the expiry as uppercase hex; players and the CDN check it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LiveSigner:
    bizid: int
    push_secret_key: str = field(repr=False)
    valid_time: int
    push_host: str
    play_host: str
    accelerate_valid_time: int = 3600

    def stream_name(self, user_id: str) -> str:
        return f"{self.bizid}_{user_id}"

    def push_url(self, user_id: str, *, now: int) -> str:
        stream = self.stream_name(user_id)
        return f"rtmp://{self.push_host}/live/{stream}?{self._query(stream, now + self.valid_time)}"

    def accelerate_url(self, stream: str, *, now: int) -> str:
        """The low-latency play URL of `stream`. Tencent signs it with the push key, so it is
        also a push credential for that stream until its txTime: hence its own, short validity."""
        return f"rtmp://{self.play_host}/live/{stream}?{self._query(stream, now + self.accelerate_valid_time)}"

    def mixed_play_url(self, stream: str) -> str:
        return f"https://{self.play_host}/live/{stream}.flv"

    def _query(self, stream: str, expires_at: int) -> str:
        tx_time = tx_time_hex(expires_at)
        secret = tx_secret(self.push_secret_key, stream, tx_time)
        return f"bizid={self.bizid}&txSecret={secret}&txTime={tx_time}"


def tx_time_hex(expires_at: int) -> str:
    return format(expires_at, "X")


def tx_secret(key: str, stream: str, tx_time: str) -> str:
    return hashlib.md5((key + stream + tx_time).encode("utf-8")).hexdigest()


def stream_name_from_push_url(push_url: str) -> str | None:
    """The path segment after `/live/` in a push URL, or None when there is none."""
    path = urlsplit(push_url).path
    marker = "/live/"
    at = path.find(marker)
    if at < 0:
        return None
    stream = path[at + len(marker) :].split("/", 1)[0]
    return stream or None
