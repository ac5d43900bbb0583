"""The whole HTTP API, fuzzed from its own OpenAPI description against a live server process:
no 5xx, every reply inside the envelope (but those described as text), and no state change from a
rejected request."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.slow

ROOM_ID = "fuzz_room"


ADMIN_KEY = "fuzz-admin-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_server() -> Iterator[str]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ROOMD_")},
            "ROOMD_LOG__LEVEL": "WARNING",
            "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "3600",  # the fuzzed room outlives the run
            # the fuzzer opens a connection per call and leaves them idle: more than one address may hold
            "ROOMD_SERVER__MAX_CONNECTIONS_PER_ADDRESS": "0",
            "ROOMD_AUTH__ADMIN_KEY": ADMIN_KEY,  # the admin API is described, and fuzzed, only with a key
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "roomd.cli", "serve", "--port", str(port)],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.05)
            body = {
                "userID": "owner",
                "userName": "o",
                "userAvatar": "",
                "pushURL": "rtmp://p/live/s",
                "roomName": "fuzz",
                "roomID": ROOM_ID,
            }
            assert httpx.post(f"{base}/weapp/multi_room/create_room", json=body).json()["code"] == 0
            yield base
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def _state(base: str) -> Any:
    rooms = httpx.post(f"{base}/weapp/multi_room/get_room_list", json={"cnt": 100}).json()["rooms"]
    return sorted((r["roomID"], r["roomInfo"], tuple(p["userID"] for p in r["pushers"])) for r in rooms)


def _documented_as_text(document: dict[str, Any], case: Any, status: int) -> bool:
    """The description gives this reply (metrics, a log file) as text/plain rather than the envelope."""
    responses = document["paths"][case.path][case.method.lower()]["responses"]
    return "text/plain" in responses.get(str(status), {}).get("content", {})


def _check(case: Any, base: str, document: dict[str, Any]) -> None:
    before = _state(base)
    response = case.call(base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    where = (case.method, case.path, response.status_code)
    assert response.status_code < 500, (*where, response.text[:300])
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if content_type.startswith("text/plain") and _documented_as_text(document, case, response.status_code):
        return
    # README, Hostile clients: only a request hypercorn itself cannot parse gets a bare 400/431 (no body);
    # the fuzzer sends well-formed HTTP, so one here means it built a request roomd never saw
    assert response.content or response.status_code not in (400, 431), (
        *where,
        "a bare reply: hypercorn could not parse the request",
        case.as_curl_command(),
    )
    # every other reply on a documented route is the envelope, whatever its status
    assert content_type.startswith("application/json"), (*where, content_type, response.text[:300])
    reply = response.json()
    assert isinstance(reply, dict) and list(reply)[:2] == ["code", "message"], (*where, reply)
    if reply["code"] != 0:
        assert isinstance(reply.get("detail"), str) and reply["detail"], (*where, reply)
        assert _state(base) == before, (case.method, case.path, case.body)  # rejected: nothing changed


def test_every_operation_of_the_openapi_description(live_server: str) -> None:
    document = httpx.get(f"{live_server}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 2 * 11 + 4 + 6  # every room endpoint of both kinds, the rest, the admin API
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            _check(case, live_server, document)

        fuzz()
