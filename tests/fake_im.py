"""A fake Tencent IM REST server: a real HTTP server on 127.0.0.1 for roomd to call.

It implements create_group, destroy_group and send_group_system_notification,
checks sdkappid, identifier and the admin usersig (v2 by its own HMAC, v1 with
the public key), records every call, and can be told to misbehave: answer
any HTTP status, hang, close the connection, take the call and lose the
reply, answer a given ErrorCode, be slow, or refuse connections altogether
(stop listening).

The same fake also answers in process, without sockets: `transport()` is an
`httpx.MockTransport` for the IM actor, so that actor tests run under
trio's mock clock and see exact times.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.loopback_http import FakeReply, FakeRequest, LoopbackServer, serve_loopback

PREFIX = "/v4/group_open_http_svc/"
APIS = ("create_group", "destroy_group", "send_group_system_notification")


@dataclass
class RecordedCall:
    api: str
    query: dict[str, str]
    body: dict[str, Any]
    at: float  # trio.current_time() when it arrived
    # "ok", an ErrorCode, "http 500", "hang", "close", "refused" (in process only), "lost" (done, see `reply_lost`)
    answered: str


@dataclass
class Behaviour:
    """What the fake does with the next requests."""

    mode: str = "ok"  # ok | http_<status> | hang | close | refuse | lose_reply | error_code
    error_code: int = 0
    delay: float = 0.0  # seconds to wait before answering, in every mode
    only_api: str | None = None  # misbehave only for this API, answer the others normally
    only_group: str | None = None  # misbehave only for this GroupId
    times: int | None = None  # misbehave this many times, then answer normally
    delays: tuple[float, ...] = ()  # per misbehaving request in turn, in place of delay


@dataclass
class FakeIm:
    sdk_app_id: int
    administrator: str
    secret_key: str = ""
    public_key: ec.EllipticCurvePublicKey | None = None
    calls: list[RecordedCall] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # GroupId -> Name
    behaviour: Behaviour = field(default_factory=Behaviour)
    rejected_auth: int = 0
    server: LoopbackServer | None = None
    refusing: bool = False  # in process (no server): every connection is refused
    reply_lost: list[str] = field(default_factory=list)  # what IM answered to the calls recorded "lost"
    _release_hung: trio.Event = field(default_factory=trio.Event)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def calls_for(self, group_id: str) -> list[str]:
        return [c.api for c in self.calls if c.body.get("GroupId") == group_id and c.answered == "ok"]

    def behave(self, **changes: Any) -> None:
        self.behaviour = Behaviour(**changes)
        if self.behaviour.mode != "hang":
            self._release_hung.set()
            self._release_hung = trio.Event()

    async def start_listening(self) -> None:
        self.refusing = False
        if self.server is not None:
            await self.server.start_listening()

    def stop_listening(self) -> None:
        """Drop every open connection and refuse new ones until start_listening."""
        if self.server is None:
            self.refusing = True  # in process: calls in flight carry on
        else:
            self.server.stop_listening()

    def transport(self) -> httpx.MockTransport:
        """This fake in process, for `ImActor(transport=...)`: no sockets, so trio's mock clock works."""
        return httpx.MockTransport(self._handle_in_process)

    async def _handle_in_process(self, request: httpx.Request) -> httpx.Response:
        answer = await self._answer(
            FakeRequest(request.method, request.url.path, dict(request.url.params), request.content)
        )
        if answer == "refuse":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if answer == "close":  # what httpx raises when a server closes the connection without a reply
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        assert isinstance(answer, FakeReply)
        return httpx.Response(answer.status, json=answer.body)

    async def handle(self, request: FakeRequest) -> FakeReply | None:
        """The loopback server's handler: None closes the connection unanswered."""
        answer = await self._answer(request)
        return answer if isinstance(answer, FakeReply) else None

    async def _answer(self, request: FakeRequest) -> FakeReply | str:
        """A reply, or "close" (the connection is closed unanswered) or "refuse" (in process: refused)."""
        api = request.path[len(PREFIX) :] if request.path.startswith(PREFIX) else ""
        query, payload = request.query, request.json()

        def record(answered: str) -> None:
            self.calls.append(RecordedCall(api, query, payload, trio.current_time(), answered))

        if self.refusing:
            record("refused")
            return "refuse"
        behaviour = self.behaviour
        misbehave = (
            behaviour.only_api in (None, api)
            and behaviour.only_group in (None, payload.get("GroupId"))
            and behaviour.times != 0
        )
        if misbehave and behaviour.times is not None:
            behaviour.times -= 1
        delay = behaviour.delay
        if misbehave and behaviour.delays:
            delay, behaviour.delays = behaviour.delays[0], behaviour.delays[1:] + behaviour.delays[:1]
        if delay:
            await trio.sleep(delay)
        mode = behaviour.mode if misbehave else "ok"
        if mode == "hang":
            record("hang")
            await self._release_hung.wait()
            return "close"
        if mode in ("close", "refuse"):  # a refusal on loopback: the connection was accepted, so closed
            record("close" if self.server is not None else "refused")
            return "close" if self.server is not None else mode
        if mode == "lose_reply":  # IM does the call; its reply never arrives
            _, answered = self._handle_api(api, query, payload)
            record("lost")
            self.reply_lost.append(answered)
            return "close"
        if mode.startswith("http_"):
            status = int(mode.removeprefix("http_"))
            record(f"http {status}")
            return FakeReply(status, {"error": "fake failure"})
        if mode == "error_code":
            record(str(behaviour.error_code))
            return FakeReply(200, _fail(behaviour.error_code, "fake error"))
        reply, answered = self._handle_api(api, query, payload)
        record(answered)
        return FakeReply(200, reply)

    # --- the IM APIs ----------------------------------------------------------------

    def _handle_api(self, api: str, query: dict[str, str], body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        if api not in APIS:
            return _fail(60003, f"no such api {api}"), "60003"
        auth_error = self._check_auth(query)
        if auth_error:
            self.rejected_auth += 1
            return _fail(70001, auth_error), "70001"
        group_id = body.get("GroupId")
        if not isinstance(group_id, str) or not group_id:
            return _fail(10004, "GroupId is required"), "10004"
        if api == "create_group":
            if body.get("Owner_Account") != self.administrator or body.get("Type") != "AVChatRoom":
                return _fail(10004, "bad Owner_Account or Type"), "10004"
            name = body.get("Name")
            if not isinstance(name, str) or not name or len(name.encode()) > 30:
                return _fail(10004, "bad Name"), "10004"
            if group_id in self.groups:
                return _fail(10025, "group id in use by you"), "10025"
            self.groups[group_id] = name
            return {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "GroupId": group_id}, "ok"
        if group_id not in self.groups:
            return _fail(10010, "group does not exist"), "10010"
        if api == "destroy_group":
            del self.groups[group_id]
        elif not isinstance(body.get("Content"), str) or not body["Content"]:  # IM takes any text
            return _fail(10004, "Content is required"), "10004"
        return {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}, "ok"

    def _check_auth(self, query: dict[str, str]) -> str:
        if query.get("sdkappid") != str(self.sdk_app_id):
            return "wrong sdkappid"
        if query.get("identifier") != self.administrator:
            return "identifier is not the administrator"
        if query.get("contenttype") != "json":
            return "contenttype must be json"
        random = query.get("random", "")
        if not random.isdigit() or int(random) >= 2**32:
            return "random must be a uint32"
        return self._check_usersig(query.get("usersig", ""))

    def _check_usersig(self, sig: str) -> str:
        try:
            raw = base64.b64decode(sig.translate(str.maketrans("*-_", "+/=")))
            payload = json.loads(zlib.decompress(raw))
        except Exception:
            return "usersig does not decode"
        if "TLS.ver" in payload:  # v2
            text = (
                f"TLS.identifier:{payload.get('TLS.identifier')}\n"
                f"TLS.sdkappid:{payload.get('TLS.sdkappid')}\n"
                f"TLS.time:{payload.get('TLS.time')}\n"
                f"TLS.expire:{payload.get('TLS.expire')}\n"
            )
            expected = base64.b64encode(
                hmac.new(self.secret_key.encode(), text.encode(), hashlib.sha256).digest()
            ).decode()
            ok = payload.get("TLS.sig") == expected
            identifier, appid = payload.get("TLS.identifier"), payload.get("TLS.sdkappid")
        else:  # v1
            names = ["appid_at_3rd", "account_type", "identifier", "sdk_appid", "time", "expire_after"]
            text = "".join(f"TLS.{n}:{payload.get('TLS.' + n)}\n" for n in names)
            ok = False
            if self.public_key is not None:
                try:
                    self.public_key.verify(
                        base64.b64decode(payload.get("TLS.sig", "")), text.encode(), ec.ECDSA(hashes.SHA256())
                    )
                    ok = True
                except (InvalidSignature, ValueError):
                    ok = False
            identifier, appid = payload.get("TLS.identifier"), payload.get("TLS.sdk_appid")
        if not ok:
            return "usersig signature does not verify"
        if identifier != self.administrator or str(appid) != str(self.sdk_app_id):
            return "usersig is for someone else"
        return ""


def _fail(code: int, info: str) -> dict[str, Any]:
    return {"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info}


async def start_fake_im(nursery: trio.Nursery, fake: FakeIm) -> FakeIm:
    fake.server = await serve_loopback(nursery, fake.handle)
    return fake
