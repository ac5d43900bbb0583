"""The request pipeline, driven through its ASGI adapter: what it answers before any handler
runs, and that a request cut short applies nothing."""

from __future__ import annotations

from typing import Any

from tests.bodies import joining, member_fields
from tests.conftest import Api


async def asgi_call(
    api: Api, path: str, messages: list[dict[str, Any]], *, headers: list[tuple[bytes, bytes]]
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
        ("GET", "/weapp/nokind/x", 404, "no route for GET /weapp/nokind/x"),
        ("GET", "/weapp/multi_room/nothing", 404, "no route for GET /weapp/multi_room/nothing"),
        ("GET", "/weapp/multi_room/get_room_list", 405, "/weapp/multi_room/get_room_list does not accept GET"),
        ("POST", "/healthz", 405, "/healthz does not accept POST"),
        ("DELETE", "/weapp/utils/logfilelist", 405, "/weapp/utils/logfilelist does not accept DELETE"),
    ]
    for method, path, status, detail in cases:
        response = await api.http.request(method, path)
        assert response.status_code == status, path
        assert response.json() == {"code": 1, "message": "请求参数错误", "detail": detail}
    too_big = await api.raw(f"{api.prefix}/multi_room/get_room_list", b"{" + b" " * 70_000 + b"}", "application/json")
    assert too_big.status == 413 and too_big.body["detail"] == "request body is larger than 65536 bytes"


async def test_a_head_request_gets_the_headers_only(api: Api) -> None:
    response = await api.http.head("/healthz")
    assert response.status_code == 200 and response.content == b""
    whole = await api.http.get("/healthz")
    assert response.headers["content-length"] == str(len(whole.content))
