"""A fake Tencent live mixing API (common_access) on 127.0.0.1: what merge_stream calls.

It checks each call the way Tencent does — POST /common_access, appid, interface
mix_streamv2.start_mix_stream_advanced, `t` not past and at most a minute
ahead, sign = md5(api_key + t) — records it with its body, and can be told to
misbehave: answer an error code of its own, an HTTP error status, text that is
not JSON, hang, close the connection unanswered, or refuse connections (stop
listening).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.loopback_http import FakeReply, FakeRequest, LoopbackServer

INTERFACE = "mix_streamv2.start_mix_stream_advanced"
MODES = ("ok", "error_code", "http_500", "not_json", "hang", "close")


@dataclass
class MixCall:
    query: dict[str, str]
    body: bytes
    answered: str  # "ok", "rejected: <why>", or the misbehaving mode

    def params(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeMixer:
    app_id: int
    api_key: str
    mode: str = "ok"
    error: tuple[int, str] = (-5, "input stream not exist")  # what mode error_code answers
    calls: list[MixCall] = field(default_factory=list)
    server: LoopbackServer | None = None
    _release_hung: trio.Event = field(default_factory=trio.Event)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    @property
    def signs(self) -> list[str]:
        return [call.query.get("sign", "") for call in self.calls]

    def behave(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode
        if mode != "hang":
            self._release_hung.set()
            self._release_hung = trio.Event()

    def rejection(self, request: FakeRequest) -> str | None:
        """Why Tencent would turn the call down, or None."""
        q = request.query
        if request.method != "POST" or request.path != "/common_access":
            return f"no such API {request.method} {request.path}"
        if q.get("appid") != str(self.app_id):
            return f"appid {q.get('appid')!r}"
        if q.get("interface") != INTERFACE:
            return f"interface {q.get('interface')!r}"
        t = q.get("t", "")
        if not t.isdigit() or not time.time() - 1 <= int(t) <= time.time() + 61:
            return f"t {t!r} is not within a minute of now"
        if q.get("sign") != hashlib.md5((self.api_key + t).encode()).hexdigest():
            return "sign"
        return None

    async def handle(self, request: FakeRequest) -> FakeReply | None:
        why = self.rejection(request)
        if why is not None:
            self.calls.append(MixCall(request.query, request.body, f"rejected: {why}"))
            return FakeReply(200, {"code": 4001, "message": f"check failed: {why}"})
        mode = self.mode
        self.calls.append(MixCall(request.query, request.body, mode))
        if mode == "hang":
            await self._release_hung.wait()
            return None
        if mode == "close":
            return None
        if mode == "http_500":
            return FakeReply(500, {"code": 500, "message": "internal error"})
        if mode == "not_json":
            return FakeReply(200, {}, text=b"<html><body>502 Bad Gateway</body></html>")
        if mode == "error_code":
            code, message = self.error
            return FakeReply(200, {"code": code, "message": message, "timestamp": int(time.time())})
        return FakeReply(200, {"code": 0, "message": "Success!", "timestamp": int(time.time())})


async def start_fake_mixer(nursery: trio.Nursery, fake: FakeMixer) -> FakeMixer:
    fake.server = LoopbackServer(fake.handle, nursery)
    await fake.server.start_listening()
    return fake
