"""A fake WeChat API server on loopback: jscode2session, the one call roomd makes."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from tests.loopback_http import FakeReply, FakeRequest, LoopbackServer, serve_loopback


@dataclass
class FakeWechat:
    app_id: str
    app_secret: str
    openids: dict[str, str] = field(default_factory=dict)  # login code -> openid
    requests: list[FakeRequest] = field(default_factory=list)
    server: LoopbackServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    async def handle(self, request: FakeRequest) -> FakeReply:
        self.requests.append(request)
        q = request.query
        if request.method != "GET" or request.path != "/sns/jscode2session":
            return FakeReply(404, {"errcode": 404, "errmsg": "no such api"})
        if q.get("appid") != self.app_id or q.get("secret") != self.app_secret:
            return FakeReply(200, {"errcode": 40125, "errmsg": "invalid appsecret"})
        if q.get("grant_type") != "authorization_code":
            return FakeReply(200, {"errcode": 40002, "errmsg": "invalid grant_type"})
        openid = self.openids.get(q.get("js_code", ""))
        if openid is None:
            return FakeReply(200, {"errcode": 40029, "errmsg": "invalid code"})
        return FakeReply(200, {"openid": openid, "session_key": "s3cr3t"})


async def start_fake_wechat(nursery: trio.Nursery, fake: FakeWechat) -> FakeWechat:
    fake.server = await serve_loopback(nursery, fake.handle)
    return fake
