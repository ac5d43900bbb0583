"""A webhook receiver on loopback for the tests: records what arrives, checks signatures its own way."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.loopback_http import FakeReply, FakeRequest, LoopbackServer, serve_loopback


def verify(secret: str, header: str, body: bytes) -> bool:
    """A receiver's check of `Roomd-Signature: t=<unix>,v1=<hex>`, written from the README alone."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if "t" not in parts or "v1" not in parts:
        return False
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@dataclass
class Receiver:
    secret: str
    events: list[dict[str, Any]] = field(default_factory=list)  # delivered (2xx), in arrival order
    refused_ids: list[str] = field(default_factory=list)  # ids of well-signed events answered 500
    bad_signatures: int = 0
    failing: bool = False  # answer 500 to everything
    delay: float = 0.0  # seconds before each answer
    server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.base_url}/hooks"

    async def handle(self, request: FakeRequest) -> FakeReply:
        if self.delay:
            await trio.sleep(self.delay)
        if not verify(self.secret, request.headers.get("roomd-signature", ""), request.body):
            self.bad_signatures += 1
            return FakeReply(401, {"error": "bad signature"})
        if self.failing:
            self.refused_ids.append(json.loads(request.body)["id"])
            return FakeReply(500, {"error": "down"})
        self.events.append(json.loads(request.body))
        return FakeReply(200, {})

    def of_room(self, room_id: str) -> list[tuple[str, str | None, str | None]]:
        return [(e["event"], e.get("member"), e.get("reason")) for e in self.events if e["room"] == room_id]


async def start_receiver(nursery: trio.Nursery, secret: str) -> Receiver:
    receiver = Receiver(secret)
    receiver.server = await serve_loopback(nursery, receiver.handle)
    return receiver
