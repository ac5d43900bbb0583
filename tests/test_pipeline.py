"""The request pipeline, driven through its ASGI adapter: what it answers before any handler
runs, and that a request cut short applies nothing."""

from __future__ import annotations

import json
from typing import Any

from tests.bodies import joining, member_fields
from tests.conftest import Api


async def asgi_call(
    api: Api, path: str, messages: list[dict[str, Any]], *, headers: list[tuple[bytes, bytes]], **scope_fields: Any
) -> list[dict[str, Any]]:
    """Call the app with `messages` as what the client sends; what it sent back."""
    incoming = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50001),
        "http_version": "1.1",
        **scope_fields,
    }
    await api.app(scope, receive, send)
    return sent


async def test_a_client_gone_mid_body_applies_nothing(api: Api) -> None:
    room_id = (await api.post("create_room", {**member_fields("alice"), "roomName": "r"})).body["roomID"]
    whole = f"roomID={room_id}&userID=bob&userName=bob&userAvatar=&pushURL=rtmp://p.test/live/8888_bob".encode()
    # the part that arrived is a valid form by itself: applying it would add bob
    sent = await asgi_call(
        api,
        f"{api.prefix}/multi_room/add_pusher",
        [{"type": "http.request", "body": whole[:-4], "more_body": True}, {"type": "http.disconnect"}],
        headers=[(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", b"200")],
    )
    assert sent == []  # nobody to answer
    pushers = (await api.post("get_pushers", {"roomID": room_id})).body["pushers"]
    assert [p["userID"] for p in pushers] == ["alice"]
    assert (await api.post("add_pusher", joining("bob", room_id))).code == 0  # the whole request works


async def test_a_route_answers_in_one_envelope_whatever_went_wrong(api: Api) -> None:
    cases = [
        ("GET", "/weapp/nokind/x", 404, "no route for GET /weapp/nokind/x", None),
        ("GET", "/weapp/multi_room/nothing", 404, "no route for GET /weapp/multi_room/nothing", None),
        ("GET", "/weapp/multi_room/get_room_list", 405, "/weapp/multi_room/get_room_list does not accept GET", "POST"),
        ("POST", "/healthz", 405, "/healthz does not accept POST", "GET, HEAD"),
        ("DELETE", "/weapp/utils/logfilelist", 405, "/weapp/utils/logfilelist does not accept DELETE", "GET, HEAD"),
    ]
    for method, path, status, detail, allow in cases:
        response = await api.http.request(method, path)
        assert response.status_code == status, path
        assert response.json() == {"code": 1, "message": "请求参数错误", "detail": detail}
        assert response.headers.get("allow") == allow, path
    too_big = await api.raw(f"{api.prefix}/multi_room/get_room_list", b"{" + b" " * 70_000 + b"}", "application/json")
    assert too_big.status == 413 and too_big.body["detail"] == "request body is larger than 65536 bytes"


async def test_a_head_request_gets_the_headers_only(api: Api) -> None:
    response = await api.http.head("/healthz")
    assert response.status_code == 200 and response.content == b""
    whole = await api.http.get("/healthz")
    assert response.headers["content-length"] == str(len(whole.content))


async def test_a_websocket_handshake_is_refused_in_the_envelope_and_counted(api: Api) -> None:
    extension: dict[str, Any] = {"extensions": {"websocket.http.response": {}}}
    sent = await asgi_call(api, "/healthz", [{"type": "websocket.connect"}], headers=[], type="websocket", **extension)
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 400 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["detail"] == "roomd does not serve WebSocket; /healthz is plain HTTP"
    unknown = await asgi_call(api, "/ws", [{"type": "websocket.connect"}], headers=[], type="websocket", **extension)
    assert unknown[0]["status"] == 404
    bare = await asgi_call(api, "/healthz", [{"type": "websocket.connect"}], headers=[], type="websocket")
    assert bare == [{"type": "websocket.close"}]  # a server without the extension refuses in its own way
    metrics = (await api.http.get("/metrics")).text
    assert 'roomd_requests_total{code="1",route="/healthz"} 2.0' in metrics
    assert 'roomd_requests_total{code="1",route="unmatched"} 1.0' in metrics


async def test_a_request_target_in_absolute_form_is_routed_by_its_path(api: Api) -> None:
    body = [{"type": "http.request", "body": b"{}"}]
    json_body = [(b"content-type", b"application/json")]
    sent = await asgi_call(api, "http://roomd.test:80/weapp/multi_room/get_room_list", body, headers=json_body)
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"])["code"] == 0
    wrong_method = await asgi_call(api, "HTTP://roomd.test/healthz", [], headers=[])
    assert wrong_method[0]["status"] == 405 and (b"allow", b"GET, HEAD") in wrong_method[0]["headers"]
    for target in ("http://roomd.test", "ftp://roomd.test/healthz", "http:/healthz"):
        assert (await asgi_call(api, target, [], headers=[]))[0]["status"] == 404, target
