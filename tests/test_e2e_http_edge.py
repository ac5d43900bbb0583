"""The strict HTTP edge of a real server process, over raw TCP: oversized heads, ambiguous
framing, malformed requests, cleartext HTTP/2 and WebSocket are refused, small and in the envelope;
a request target in absolute form is served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.conftest import eventually
from tests.raw_http import RawReply, address, exchange, read_reply
from tests.server_process import ServerProcess, running_roomd

pytestmark = pytest.mark.slow

ROOM_LIST = b"POST /weapp/multi_room/get_room_list HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2C_UPGRADE = (
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
)
SETTINGS_FRAME_TYPE = 0x04
WEBSOCKET_HEAD = (
    b"Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with running_roomd(tmp_path) as server:  # max_header_bytes 16384, h2c off: the defaults
        yield server


def assert_refused_in_envelope(reply: RawReply, status: int, detail_words: str) -> None:
    assert reply.status == status, reply.raw[:200]
    assert reply.headers["connection"] == "close"
    body = reply.json()
    assert body["code"] == 1 and body["message"] and detail_words in body["detail"]
    assert reply.closed


def head_of(size: int, extra: bytes = b"") -> bytes:
    """A get_room_list request whose head is `size` bytes, padded with one header."""
    start = ROOM_LIST + extra + b"Content-Length: 2\r\nX-Filler: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


async def test_a_large_head_in_one_write_is_refused_with_431(server: ServerProcess) -> None:
    # 40 KB arrives in one read: h11 sees a complete head and never applies its limit
    assert_refused_in_envelope(await exchange(server.base_url, head_of(40_000) + b"{}"), 431, "16384 bytes")


async def test_a_large_head_in_several_writes_is_refused_with_431(server: ServerProcess) -> None:
    head = head_of(20_000)
    # two halves: each part is under h11's limit for an incomplete head, the whole is not
    assert_refused_in_envelope(
        await exchange(server.base_url, head[:10_000], head[10_000:] + b"{}", pause=0.2), 431, "16384 bytes"
    )
    # many small pieces: refused while still incomplete (by h11: bare 431, no body)
    trickled = await exchange(server.base_url, *(head[i : i + 2000] for i in range(0, len(head), 2000)), pause=0.05)
    assert trickled.status == 431 and trickled.closed


async def test_a_head_just_under_the_limit_is_served(server: ServerProcess) -> None:
    reply = await exchange(server.base_url, head_of(16_000, b"Connection: close\r\n") + b"{}")
    assert reply.status == 200 and reply.json()["code"] == 0


async def test_content_length_with_transfer_encoding_is_refused_with_400(server: ServerProcess) -> None:
    request = ROOM_LIST + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(10):
        reply = await exchange(server.base_url, request + smuggled)
        assert_refused_in_envelope(reply, 400, "Content-Length and Transfer-Encoding")
        assert reply.raw.count(b"HTTP/1.1") == 1  # nothing after it is served


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
    ids=["request line", "header name", "conflicting lengths"],
)
async def test_malformed_requests_get_a_bare_400(server: ServerProcess, request_bytes: bytes) -> None:
    reply = await exchange(server.base_url, request_bytes)
    assert reply.raw == b"HTTP/1.1 400 \r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    assert reply.closed


async def test_cleartext_http2_is_refused_when_h2c_is_off(server: ServerProcess) -> None:
    for _ in range(20):  # the preface's last line comes with the request: the reply must still arrive whole
        preface = await exchange(server.base_url, H2_PREFACE)
        assert_refused_in_envelope(preface, 505, "HTTP/2.0 is not served")
    upgrade = await exchange(server.base_url, H2C_UPGRADE, within=1)  # keep-alive: read until the timeout
    assert upgrade.status == 200 and "upgrade" not in upgrade.headers
    assert upgrade.json()["status"] == "up"
    assert b"server:" not in upgrade.raw.lower()


async def test_cleartext_http2_is_served_when_h2c_is_on(tmp_path: Path) -> None:
    async with running_roomd(tmp_path, ROOMD_SERVER__H2C="true") as server:
        preface = await exchange(server.base_url, H2_PREFACE, within=1)
        assert preface.raw[3] == SETTINGS_FRAME_TYPE  # the server's HTTP/2 preface: a SETTINGS frame
        upgrade = await exchange(server.base_url, H2C_UPGRADE, within=1)
        assert upgrade.raw.startswith(b"HTTP/1.1 101 ")
        assert upgrade.headers["upgrade"] == "h2c"


async def test_a_connection_the_client_asked_to_close_closes_after_the_reply(server: ServerProcess) -> None:
    for request in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # served by Quart
        b"GET /healthz HTTP/1.0\r\n\r\n",
        ROOM_LIST + b"Connection: close\r\nContent-Length: 2\r\n\r\n{}",  # served by room_asgi
    ):
        started = trio.current_time()
        reply = await exchange(server.base_url, request, within=3)
        assert reply.status == 200 and reply.closed
        assert trio.current_time() - started < 1  # not left open until a timeout


def response_log(server: ServerProcess) -> str:
    return "".join(path.read_text(encoding="utf-8") for path in (server.log_dir / "response").rglob("*.log"))


async def test_a_websocket_handshake_is_refused_in_the_envelope_logged_and_counted(server: ServerProcess) -> None:
    known = await exchange(server.base_url, b"GET /weapp/multi_room/get_pushers HTTP/1.1\r\n" + WEBSOCKET_HEAD)
    assert_refused_in_envelope(known, 400, "roomd does not serve WebSocket; /weapp/multi_room/get_pushers is plain")
    unknown = await exchange(server.base_url, b"GET /weapp/socket HTTP/1.1\r\n" + WEBSOCKET_HEAD)
    assert_refused_in_envelope(unknown, 404, "roomd does not serve WebSocket, and has no route for /weapp/socket")
    metrics = await exchange(server.base_url, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b'roomd_requests_total{code="1",route="multi_room/get_pushers"} 1.0' in metrics.body
    assert b'roomd_requests_total{code="1",route="unmatched"} 1.0' in metrics.body
    await eventually(lambda: "GET /weapp/socket ip=127.0.0.1 body= status=404 code=1" in response_log(server))
    assert "GET /weapp/multi_room/get_pushers ip=127.0.0.1 body= status=400 code=1" in response_log(server)


async def test_a_request_target_in_absolute_form_is_routed_by_its_path(server: ServerProcess) -> None:
    health = await exchange(server.base_url, b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert health.status == 200 and health.json()["status"] == "up"
    listed = await exchange(
        server.base_url,
        ROOM_LIST.replace(b"POST /", b"POST http://x:80/") + b"Connection: close\r\nContent-Length: 2\r\n\r\n{}",
    )
    assert listed.status == 200 and listed.json() == {"code": 0, "message": "请求成功", "rooms": []}
    unknown = await exchange(server.base_url, b"GET http://x/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert unknown.status == 404 and unknown.json()["detail"] == "no route for GET http://x/nope"


async def test_a_body_over_the_limit_and_a_wrong_method_are_answered_in_the_envelope(server: ServerProcess) -> None:
    too_big = ROOM_LIST + b"Content-Length: 70000\r\n\r\n"  # over max_body_bytes (64 KiB): refused unread
    reply = await exchange(server.base_url, too_big)
    assert reply.status == 413, reply.raw[:200]
    assert reply.json()["code"] == 1 and "65536" in reply.json()["detail"]
    # the client is told the connection closes, or its pool would send the next request into it
    assert reply.closed and reply.headers["connection"] == "close"
    chunk = b"[" * 40_000
    chunked = ROOM_LIST + b"Transfer-Encoding: chunked\r\n\r\n" + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2
    over = await exchange(server.base_url, chunked)  # over the limit only once its second chunk has come
    assert over.status == 413 and over.headers["connection"] == "close" and over.closed, over.raw[:200]
    # a body sent with a method the route does not take is not read: answered, then the connection closes
    wrong_method = b"PUT /weapp/multi_room/get_room_list HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"
    wrong = await exchange(server.base_url, wrong_method)
    assert wrong.status == 405 and wrong.headers["allow"] == "POST", wrong.raw[:200]
    assert wrong.json()["code"] == 1 and wrong.json()["message"] and wrong.closed


async def test_a_connection_the_client_closed_is_let_go_at_once_not_after_keep_alive(tmp_path: Path) -> None:
    """Clients that close their idle keep-alive connections (as pools do) free their place under
    max_connections_per_address at once: 60 in a row from one address, at most 20 open, all served."""
    env = {"ROOMD_SERVER__MAX_CONNECTIONS_PER_ADDRESS": "20", "ROOMD_SERVER__KEEP_ALIVE_TIMEOUT": "30"}
    async with running_roomd(tmp_path, **env) as server:
        host, port = address(server.base_url)
        statuses = []
        with trio.fail_after(30):
            for _ in range(60):
                stream = await trio.open_tcp_stream(host, port)
                async with stream:
                    await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive
                    reply = b""
                    while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
                        chunk = await stream.receive_some(65536)
                        if not chunk:
                            break
                        reply += chunk
                    statuses.append(reply.split(b" ", 2)[1] if reply else b"reset")
                    await stream.send_eof()  # the client is done; the server may wait for nothing more
                    await read_reply(stream, within=5)  # the server closes its side at once
        assert statuses == [b"200"] * 60
