"""End to end: the logs of a real `roomd serve` process against hostile clients and a full disk.

Clients cannot forge log lines (nor can an upstream's answer, in the error
file), secrets never reach the log directory or the console, the response
files stay within `log.max_bytes`, and a disk
that refuses writes drops log lines (counted in /metrics) while every
request is still served, until writing resumes by itself.
"""

from __future__ import annotations

import json
import os
import re
import resource
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.bodies import joining, member_fields
from tests.loopback_http import FakeReply, FakeRequest, serve_loopback
from tests.server_process import ServerProcess, running_roomd

pytestmark = pytest.mark.slow

ANY_CONTROL_BUT_LF = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| ")
SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FORGED_RECORD = "2026-01-01 00:00:00.000 | INFO    | http | FORGED"
PUSH_KEY = "push-key-e2e-5c1f0a9b77"
IM_KEY = "im-key-e2e-7d3b2a18ee"
SECRETS_ENV = {"ROOMD_LIVE__BIZID": "8888", "ROOMD_LIVE__PUSH_SECRET_KEY": PUSH_KEY, "ROOMD_IM__SECRET_KEY": IM_KEY}
# No warning or error roomd logs quotes free text a client sent (IDs are printable and without
# whitespace; the WeChat login code is a secret, never logged), so the outside text that reaches
# the error file is an upstream's: jscode2session's answer to a client's login code.
WECHAT_LOGIN_CODE = f"\r\n{FORGED_RECORD}\u2028login-code-0d5e9f"
WECHAT_ERRMSG = f"invalid code\r\n{FORGED_RECORD}\u2028\x85FORGED\x1b[2J"
WECHAT_WARNING = (
    f"jscode2session failed (errcode 40029: invalid code\\x0d\\x0a{FORGED_RECORD}\\u2028\\x85FORGED\\x1b[2J); "
    "using a random userID"
)


async def refusing_wechat(request: FakeRequest) -> FakeReply:
    return FakeReply(200, {"errcode": 40029, "errmsg": WECHAT_ERRMSG})


def base_url(server: ServerProcess) -> str:
    """The server's URL; in JSON log mode the listening line's URL is followed by `"}`."""
    match = re.match(r"http://[0-9.]+:[0-9]+", server.base_url)
    assert match is not None
    return match.group()


def log_texts(server: ServerProcess, kind: str = "") -> dict[Path, str]:
    base = server.log_dir / kind if kind else server.log_dir
    return {path: path.read_text(encoding="utf-8") for path in sorted(base.rglob("*.log"))}


def message_of(line: str, log_format: str) -> str:
    if log_format == "json":
        message: str = json.loads(line)["message"]
        return message
    return line.split(" | ", 3)[3]


async def eventually(predicate: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait in real time (a real process is involved) until `predicate()` holds."""
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 -- another process's files: no event to wait on
            await trio.sleep(0.05)


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_clients_cannot_forge_log_lines(tmp_path: Path, log_format: str) -> None:
    bodies = [
        f"\r\n{FORGED_RECORD}".encode(),
        f"\n{FORGED_RECORD}".encode(),
        b"x\xc2\x85FORGED | INFO",  # NEL
        "x\u2028FORGED | INFO\u2029".encode(),
        b"x\x00\x1b[2J\x0b\x0cFORGED",
        b"x\x7f\xc2\x9bFORGED",
    ]
    paths = [
        "/weapp/multi_room/get_room_list%0d%0aFORGED%20|%20INFO",  # a room route's endpoint
        "/weapp/multi_room/x%C2%85FORGED",
        "/weapp/utils/nothing%E2%80%A8FORGED",  # a route Quart answers
        "/nothing%0a2026-01-01%2000:00:00.000%20|%20INFO%20FORGED",
    ]
    async with trio.open_nursery() as nursery:
        wechat = await serve_loopback(nursery, refusing_wechat)
        wechat_env = {
            "ROOMD_WECHAT__APP_ID": "wx-app",
            "ROOMD_WECHAT__APP_SECRET": "wx-secret",
            "ROOMD_WECHAT__BASE_URL": wechat.base_url,
        }
        async with (
            running_roomd(tmp_path, ROOMD_LOG__FORMAT=log_format, **SECRETS_ENV, **wechat_env) as server,
            httpx.AsyncClient(base_url=base_url(server)) as http,
        ):
            requests = 0
            for raw in bodies:
                await http.post(
                    "/weapp/multi_room/get_room_list",
                    content=b'{"index":0,"x":"' + raw + b'"}',
                    headers={"Content-Type": "application/json"},
                )
                await http.post(
                    "/weapp/double_room/get_room_list",
                    content=b"x=" + raw,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                requests += 2
            for path in paths:
                await http.post(path, json={})
                requests += 1
            await http.post("/weapp/multi_room/get_room_list?x=%0d%0aFORGED&y=\u2028", json={})
            hostile_headers = {
                "User-Agent": b"a\xc2\x85FORGED",
                "X-Forged": "x\u2028FORGED".encode(),
                "Referer": b"\x9b",
            }
            reply = await http.post("/weapp/multi_room/get_room_list", json={}, headers=hostile_headers)
            assert reply.json()["code"] == 0
            requests += 2
            login = {"userIDPrefix": "weixin", "code": WECHAT_LOGIN_CODE}  # WeChat refuses it
            reply = await http.post("/weapp/multi_room/get_im_login_info", json=login)
            assert reply.json()["code"] == 0 and reply.json()["userID"].startswith("weixin_")
            requests += 1
        nursery.cancel_scope.cancel()
    assert server.process.returncode == 0
    files = log_texts(server)
    assert files and all(SAFE_FILE_NAME.match(path.name) for path in files)
    for text in [*files.values(), "\n".join(server.output)]:
        assert ANY_CONTROL_BUT_LF.search(text) is None
        for line in text.split("\n"):
            assert not line.startswith(("FORGED", "2026-01-01 00:00:00.000")), line
    response_lines = "".join(log_texts(server, "response").values()).splitlines()
    assert len(response_lines) == requests  # one line per request, however hostile the request
    if log_format == "text":
        assert all(RECORD_START.match(line) for line in response_lines)
    logged = "\n".join(message_of(line, log_format) for line in response_lines)
    for escaped in (
        f"\\x0d\\x0a{FORGED_RECORD}",
        f"x=\\x0a{FORGED_RECORD}",
        "\\x85FORGED | INFO",
        "\\u2028FORGED | INFO\\u2029",
        "\\x00\\x1b[2J\\x0b\\x0cFORGED",
        "\\x7f\\x9bFORGED",
        "get_room_list\\x0d\\x0aFORGED | INFO",
        "/weapp/multi_room/x\\x85FORGED",
        "/weapp/utils/nothing\\u2028FORGED",
        "/nothing\\x0a2026-01-01 00:00:00.000 | INFO FORGED",
        "?x=%0d%0aFORGED&y=%E2%80%A8",  # a query is logged as sent: still encoded
    ):
        assert escaped in logged, escaped
    error_lines = "".join(log_texts(server, "error").values()).splitlines()
    assert [message_of(line, log_format) for line in error_lines if "jscode2session" in line] == [WECHAT_WARNING]
    everything = "\n".join([*files.values(), *server.output])
    assert "login-code-0d5e9f" not in everything  # the login code is a secret, escaped or not


def tx_secret(url: str) -> str:
    secret: str = parse_qs(urlsplit(url).query)["txSecret"][0]
    assert re.fullmatch(r"[0-9a-f]{32}", secret)
    return secret


async def test_secrets_reach_neither_the_log_files_nor_the_console(tmp_path: Path) -> None:
    async with running_roomd(tmp_path, **SECRETS_ENV) as server, httpx.AsyncClient(base_url=base_url(server)) as http:

        async def call(endpoint: str, **body: str) -> dict[str, object]:
            reply: dict[str, object] = (await http.post(f"/weapp/multi_room/{endpoint}", json=body)).json()
            assert reply["code"] == 0, reply
            return reply

        creator = await call("get_im_login_info", userIDPrefix="weixin")
        guest = await call("get_im_login_info", userIDPrefix="android")
        creator_url = str((await call("get_push_url", userID=str(creator["userID"])))["pushURL"])
        guest_url = str((await call("get_push_url", userID=str(guest["userID"])))["pushURL"])
        member = {"userName": "n", "userAvatar": "https://a.test/a.png"}
        room = str(
            (await call("create_room", userID=str(creator["userID"]), roomName="r", pushURL=creator_url, **member))[
                "roomID"
            ]
        )
        form = urlencode({"roomID": room, "userID": guest["userID"], "pushURL": guest_url, **member})
        joined = await http.post(
            "/weapp/multi_room/add_pusher",
            content=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert joined.json()["code"] == 0
        pushers = (await call("get_pushers", roomID=room))["pushers"]
        accelerate_urls = [str(p["accelerateURL"]) for p in pushers]  # type: ignore[attr-defined]
        assert len(accelerate_urls) == 2
        # clients echoing what they were given, in every shape a request can take
        echo = accelerate_urls[0]
        await http.post(
            f"/weapp/multi_room/pusher_heartbeat?url={quote(echo, safe='')}&userSig={guest['userSig']}",
            json={"roomID": room, "userID": guest["userID"]},
        )
        await http.post(
            "/weapp/multi_room/pusher_heartbeat", json={"roomID": room, "userID": guest["userID"], "playURL": echo}
        )
        escaped_slashes = json.dumps(
            {
                "roomID": room,
                "userID": creator["userID"],
                "pushURL": accelerate_urls[1],
                "userSig": creator["userSig"],
                "token": "token-from-a-client",
            }
        ).replace("/", "\\/")
        await http.post(
            "/weapp/multi_room/pusher_heartbeat",
            content=escaped_slashes,
            headers={"Content-Type": "application/json"},
        )
        await http.get("/weapp/utils/get_login_info", params={"userID": "visitor", "userSig": guest["userSig"]})
        # names and `=` spelled with escapes, which the parsers decode
        sig = str(guest["userSig"])
        escaped_name = json.dumps({"roomID": room, "userID": guest["userID"], "userSig": sig})
        escaped_equals = json.dumps({"roomID": room, "userID": guest["userID"], "pushURL": creator_url})
        for text in [
            escaped_name.replace("userSig", "user\\u0053ig"),
            escaped_equals.replace("txSecret=", "txSecret\\u003d"),
        ]:
            await http.post(
                "/weapp/multi_room/pusher_heartbeat", content=text, headers={"Content-Type": "application/json"}
            )
        await http.post(
            f"/weapp/multi_room/pusher_heartbeat?%75serSig={quote(sig, safe='')}",
            content=urlencode({"roomID": room, "userID": guest["userID"]}) + f"&user%53ig={quote(sig, safe='')}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    secrets = [tx_secret(url) for url in (creator_url, guest_url, *accelerate_urls)]
    secrets += [str(creator["userSig"]), str(guest["userSig"]), "token-from-a-client", PUSH_KEY, IM_KEY]
    response_text = "".join(log_texts(server, "response").values())
    # 3 as sent, 1 sent as txSecret\u003d and logged decoded; 2 in forms
    assert response_text.count("txSecret=<redacted>") == 4 and response_text.count("txSecret%3D<redacted>") == 2
    assert response_text.count("<escapes decoded>") == 4  # two JSON bodies, then one query and its form body
    everything = "\n".join([*log_texts(server).values(), *server.output])
    for secret in secrets:
        assert secret not in everything, secret


async def test_response_files_stay_within_their_share_of_max_bytes(tmp_path: Path) -> None:
    max_bytes = 1 << 20  # the smallest allowed: a third for response files, an eighth of that a file
    budget, per_file = max_bytes // 3, max_bytes // 3 // 8
    requests = 1000
    body = json.dumps({"index": 0, "pad": "p" * 1000})
    async with (
        running_roomd(tmp_path, ROOMD_LOG__MAX_BYTES=str(max_bytes)) as server,
        httpx.AsyncClient(base_url=base_url(server)) as http,
    ):

        async def client(count: int) -> None:
            for _ in range(count):
                await http.post(
                    "/weapp/multi_room/get_room_list", content=body, headers={"Content-Type": "application/json"}
                )

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(client, requests // 8)
    files = log_texts(server, "response")
    sizes = [path.stat().st_size for path in files]
    assert sum(sizes) <= budget + per_file, sizes
    # several files (how many depends on how the 0.1 s batches fell), with safe names
    assert len(files) >= 2 and all(SAFE_FILE_NAME.match(path.name) for path in files)
    kept_lines = sum(text.count("\n") for text in files.values())
    assert kept_lines < requests  # the oldest lines were deleted: more was written than is kept
    assert kept_lines * (len(body) + 100) > budget * 0.5  # ... and a good part of the budget is kept


async def test_files_older_than_retention_are_deleted_at_start_whatever_their_kind(tmp_path: Path) -> None:
    day = 86_400
    now = time.time()
    old, recent = {}, {}
    for kind in ("response", "app", "error"):
        directory = tmp_path / "logs" / kind
        directory.mkdir(parents=True)
        old[kind] = directory / f"{kind}-2026-01-01-00.log"
        recent[kind] = directory / f"{kind}-2026-01-02-00.log"
        for path, age in ((old[kind], 3 * day), (recent[kind], day / 2)):
            path.write_text("an earlier run\n")
            os.utime(path, (now - age, now - age))
    async with (
        running_roomd(tmp_path, ROOMD_LOG__RETENTION="2 days") as server,
        httpx.AsyncClient(base_url=base_url(server)) as http,
    ):
        assert (await http.get("/healthz")).status_code == 200
    assert not any(path.exists() for path in old.values()), [path.name for path in log_texts(server)]
    assert all(path.exists() for path in recent.values())


def dropped_writes(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "roomd_log_writes_dropped_total":
                return float(sample.value)
    raise AssertionError("no roomd_log_writes_dropped_total in /metrics")


async def scrape_until(http: httpx.AsyncClient, enough: Callable[[float], bool], *, within: float = 5.0) -> float:
    """The dropped-writes count from /metrics, once it is `enough`."""
    with trio.fail_after(within):
        while True:
            dropped = dropped_writes((await http.get("/metrics")).text)
            if enough(dropped):
                return dropped
            await trio.sleep(0.05)


async def test_a_full_disk_drops_log_lines_but_no_request_and_logging_resumes(tmp_path: Path) -> None:
    async with running_roomd(tmp_path, ROOMD_SERVER__PERSIST="false") as server:
        pid = server.process.pid
        async with httpx.AsyncClient(base_url=base_url(server)) as http:

            async def room_call(endpoint: str, **body: object) -> None:
                reply = await http.post(f"/weapp/multi_room/{endpoint}", json=body)
                assert reply.status_code == 200 and reply.json()["code"] == 0

            await room_call("get_room_list", marker="before-the-disk-filled")
            await eventually(lambda: "before-the-disk-filled" in "".join(log_texts(server, "response").values()))
            [response_file] = log_texts(server, "response")
            assert dropped_writes((await http.get("/metrics")).text) == 0
            soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            # every write past the file's present size now fails with EFBIG (CPython ignores SIGXFSZ)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (response_file.stat().st_size, hard))
            try:
                full_size = response_file.stat().st_size
                for _ in range(5):
                    await room_call("get_im_login_info", userIDPrefix="weixin")
                    await room_call("get_room_list", marker="while-the-disk-is-full")
                    await trio.sleep(0.05)
                first = await scrape_until(http, lambda dropped: dropped > 0)
                # a batch after that scrape failed as well: no line logged while the disk was full
                # is still waiting in the response log's buffer
                last = await scrape_until(http, lambda dropped: dropped > first)
                assert server.process.returncode is None
                assert (await http.get("/healthz")).status_code == 200
                assert response_file.stat().st_size == full_size
            finally:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
            await room_call("get_room_list", marker="after-space-returned")
            await eventually(lambda: "after-space-returned" in "".join(log_texts(server, "response").values()))
            assert dropped_writes((await http.get("/metrics")).text) >= last
    response_text = "".join(log_texts(server, "response").values())
    assert "while-the-disk-is-full" not in response_text
    assert all(RECORD_START.match(line) for line in response_text.splitlines())
    notices = server.lines_about("roomd: ")
    assert any("cannot write response log file" in line and "EFBIG" in line for line in notices)
    assert any("writing response log files again" in line for line in notices)
    assert not any("while-the-disk-is-full" in line for line in server.output)
    assert server.process.returncode == 0


async def test_a_rooms_life_is_in_the_app_log_file(tmp_path: Path) -> None:
    async with running_roomd(tmp_path) as server, httpx.AsyncClient(base_url=base_url(server)) as http:
        created = await http.post("/weapp/multi_room/create_room", json=member_fields("alice", roomName="logged"))
        room_id = created.json()["roomID"]
        await http.post("/weapp/multi_room/add_pusher", json=joining("bob", room_id))
        await http.post("/weapp/multi_room/delete_pusher", json={"roomID": room_id, "userID": "bob"})
        await http.post("/weapp/multi_room/destroy_room", json={"roomID": room_id, "userID": "alice"})
    app = "".join(log_texts(server, "app").values())
    story = [line for line in app.splitlines() if room_id in line]
    for needle in (
        "room created",
        "member joined user=bob",
        "member left user=bob reason=left",
        "member left user=alice reason=room_closed",
        "room closed reason=destroyed",
    ):
        assert any(needle in line for line in story), needle
    assert "POST /weapp" not in app  # request lines stay in the response files
