"""merge_stream: a room member's mixing parameters reach Tencent's live mixing API, signed, and its
answer comes back as `result`; failures are code 6 with a result the mini-program can read.

Through the in-process app against a fake mixing API on loopback (tests/fake_mixer.py), and the
outbound path alone (StreamMixer) under trio's mock clock for exact retries and times.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import trio
from loguru import logger

from roomd.config import LiveSettings, LogSettings
from roomd.logs.setup import configure_logging, flush_logs
from roomd.qcloud.live_mix import mix_sign
from roomd.web.stream_mixer import MAX_CONCURRENT_CALLS, StreamMixer
from tests.bodies import member_fields
from tests.conftest import Api, make_settings, open_roomd
from tests.fake_mixer import FakeMixer, start_fake_mixer

APP_ID = 1250000001
API_KEY = "mix-api-key-5e8d1c0b7a"
ROOM = "mix_room"
NOT_JSON_MESSAGE = "mergeParams 不是合法的JSON格式的字符串"
# what the clients send: the mini-program JSON.stringify()s it, the Windows client sends the object
MERGE_INFO: dict[str, Any] = {
    "timestamp": 1750000000,
    "eventId": 1750000000,
    "interface": {
        "interfaceName": "Mix_StreamV2",
        "para": {
            "app_id": APP_ID,
            "interface": "mix_streamv2.start_mix_stream_advanced",
            "mix_stream_session_id": "8888_anchor",
            "output_stream_id": "8888_anchor",
            "input_stream_list": [
                {"input_stream_id": "8888_anchor", "layout_params": {"image_layer": 1}},
                {
                    "input_stream_id": "8888_guest",
                    "layout_params": {"image_layer": 2, "image_width": 160, "location_x": 0.75},
                },
            ],
            "note": "主播和连麦观众",
        },
    },
}


@asynccontextmanager
async def open_mix_world(*, room_kind: str | None = "live_room", **env: str) -> AsyncIterator[tuple[Api, FakeMixer]]:
    """roomd in-process with merge_stream configured to call a fake mixing API, and a room ROOM of
    `room_kind` whose creator "anchor" is its one member."""
    async with trio.open_nursery() as nursery:
        fake = await start_fake_mixer(nursery, FakeMixer(APP_ID, API_KEY))
        configured = {
            "ROOMD_LIVE__APP_ID": str(APP_ID),
            "ROOMD_LIVE__API_KEY": API_KEY,
            "ROOMD_LIVE__API_BASE_URL": fake.base_url,
        }
        settings = make_settings(**{**configured, **env})
        async with open_roomd(settings) as api:
            if room_kind is not None:
                created = await api.post(
                    "create_room", {**member_fields("anchor"), "roomName": "mix", "roomID": ROOM}, kind=room_kind
                )
                assert created.code == 0, created.body
            yield api, fake
        nursery.cancel_scope.cancel()


def merging(merge_params: Any, user_id: str = "anchor", room_id: str = ROOM) -> dict[str, Any]:
    return {"roomID": room_id, "userID": user_id, "mergeParams": merge_params}


# --- through the app ---------------------------------------------------------------------------


async def test_an_object_reaches_the_mixing_api_unchanged_and_its_answer_is_the_result() -> None:
    async with open_mix_world(room_kind="multi_room") as (api, fake):  # the Windows client
        answer = await api.post("merge_stream", merging(MERGE_INFO), kind="multi_room")
    assert answer.status == 200 and answer.code == 0 and answer.body["message"] == "请求成功"
    [call] = fake.calls
    assert call.answered == "ok" and call.params() == MERGE_INFO
    assert answer.body["result"]["code"] == 0 and answer.body["result"]["message"] == "Success!"


async def test_a_string_of_json_reaches_the_mixing_api_as_the_json_it_holds() -> None:
    text = json.dumps(MERGE_INFO, ensure_ascii=False, indent=2)  # JSON.stringify(mergeInfo), spaced or not
    async with open_mix_world() as (api, fake):  # the mini-program, on live_room
        as_json = await api.post("merge_stream", merging(text), kind="live_room")
        form = urlencode(merging(text)).encode()
        as_form = await api.raw("/weapp/live_room/merge_stream", form, "application/x-www-form-urlencoded")
    assert as_json.code == 0 and as_form.code == 0
    assert [call.answered for call in fake.calls] == ["ok", "ok"]
    assert all(call.params() == MERGE_INFO for call in fake.calls)
    assert fake.calls[0].body == json.dumps(MERGE_INFO, ensure_ascii=False, separators=(",", ":")).encode()


async def test_tencents_own_error_code_is_passed_on_in_the_result() -> None:
    async with open_mix_world() as (api, fake):
        fake.behave("error_code")
        answer = await api.post("merge_stream", merging(MERGE_INFO), kind="live_room")
    assert answer.code == 0  # roomd did its part; the client reads result.code
    assert answer.body["result"]["code"] == -5 and answer.body["result"]["message"] == "input stream not exist"


@pytest.mark.parametrize(
    "text", ["not json", "{", "", "[1, 2]", '"a string"', "42", "null", '{"a": NaN}', '{"a": Infinity}']
)
async def test_a_string_that_does_not_hold_a_json_object_is_code_10(text: str) -> None:
    async with open_mix_world() as (api, fake):
        answer = await api.post("merge_stream", merging(text), kind="live_room")
    assert answer.code == 10 and answer.body["message"] == NOT_JSON_MESSAGE
    assert answer.body["detail"].startswith("mergeParams is a string")
    assert fake.calls == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"roomID": ROOM, "userID": "anchor"}, "mergeParams is required"),
        (merging(None), "mergeParams is required"),
        (merging(42), "mergeParams must be a JSON object or a string holding one"),
        (merging([MERGE_INFO]), "mergeParams must be a JSON object or a string holding one"),
        (merging({"a": math.nan}), "mergeParams holds NaN or Infinity, which JSON does not allow"),
        (merging({"a": "\ud800"}), "mergeParams is not valid Unicode text (a lone surrogate)"),
        (merging("[" * 100_000), "mergeParams is nested too deeply"),
        (
            merging({"a": "x" * 65_000, "b": "y" * 1_000}),
            "mergeParams is 66015 bytes of JSON; at most 65536 are allowed",
        ),
        ({"roomID": ROOM, "mergeParams": MERGE_INFO}, "userID is required"),
    ],
)
async def test_missing_ill_typed_or_unusable_merge_params_are_code_1(body: dict[str, Any], detail: str) -> None:
    async with open_mix_world(ROOMD_SERVER__MAX_BODY_BYTES="200000") as (api, fake):
        answer = await api.post("merge_stream", body, kind="live_room")
    assert answer.code == 1 and answer.body["detail"] == detail
    assert fake.calls == []


async def test_only_a_member_of_an_existing_room_may_merge() -> None:
    async with open_mix_world() as (api, fake):
        stranger = await api.post("merge_stream", merging(MERGE_INFO, user_id="stranger"), kind="live_room")
        no_room = await api.post("merge_stream", merging(MERGE_INFO, room_id="nope"), kind="live_room")
        other_kind = await api.post("merge_stream", merging(MERGE_INFO), kind="double_room")
    assert stranger.code == 5 and stranger.body["detail"] == (
        "stranger is not a member of room mix_room; only members mix streams"
    )
    assert no_room.code == 3 and no_room.body["detail"] == "room nope does not exist"
    assert other_kind.code == 3  # rooms are per kind
    assert fake.calls == []


async def test_in_token_mode_a_member_merges_only_as_itself() -> None:
    token_mode = {"ROOMD_AUTH__MODE": "token", "ROOMD_AUTH__TOKEN_SECRET": "k" * 64}
    async with open_mix_world(room_kind=None, **token_mode) as (api, fake):
        anchor, guest = [(await api.post("get_im_login_info", {"userIDPrefix": "u"})).body for _ in range(2)]

        async def post(endpoint: str, body: dict[str, Any], caller: dict[str, Any]) -> Any:
            path = f"/weapp/live_room/{endpoint}?userID={caller['userID']}&token={caller['token']}"
            return await api.raw(path, json.dumps(body).encode(), "application/json")

        fields = {**member_fields(anchor["userID"]), "roomName": "mix", "roomID": ROOM}
        assert (await post("create_room", fields, anchor)).code == 0
        for_the_anchor = await post("merge_stream", merging(MERGE_INFO, user_id=anchor["userID"]), guest)
        as_itself = await post("merge_stream", merging(MERGE_INFO, user_id=anchor["userID"]), anchor)
    assert for_the_anchor.code == 7 and as_itself.code == 0
    assert [call.answered for call in fake.calls] == ["ok"]


@pytest.mark.parametrize("unset", [{"ROOMD_LIVE__APP_ID": "0"}, {"ROOMD_LIVE__API_KEY": ""}])
async def test_merge_stream_is_code_1_naming_the_settings_until_configured(unset: dict[str, str]) -> None:
    async with open_mix_world(**unset) as (api, fake):
        answer = await api.post("merge_stream", merging(MERGE_INFO), kind="live_room")
    assert answer.code == 1
    assert "live.app_id" in answer.body["detail"] and "live.api_key" in answer.body["detail"]
    assert fake.calls == []


@pytest.mark.parametrize(
    ("mode", "calls", "why"),
    [
        ("down", 0, "no answer from the mixing API (ConnectError: "),
        ("close", 3, "no answer from the mixing API (RemoteProtocolError: "),  # retried twice
        ("http_500", 1, "the mixing API answered HTTP 500"),  # an HTTP answer is never retried
        ("not_json", 1, "the mixing API's reply is not JSON"),
    ],
)
async def test_a_failing_mixing_api_is_code_6_with_a_result_the_client_can_read(
    mode: str, calls: int, why: str
) -> None:
    async with open_mix_world() as (api, fake):
        if mode == "down":
            assert fake.server is not None
            fake.server.stop_listening()
        else:
            fake.behave(mode)
        answer = await api.post("merge_stream", merging(MERGE_INFO), kind="live_room")
    assert answer.code == 6 and answer.body["message"] == "服务器内部错误"
    result = answer.body["result"]
    assert result["code"] == -1 and result["message"].startswith(why)
    assert answer.body["detail"] == f"merge_stream got no usable answer: {result['message']}"
    assert [call.answered for call in fake.calls] == [mode] * calls


async def test_a_hanging_mixing_api_is_answered_by_the_requests_deadline() -> None:
    async with open_mix_world(ROOMD_SERVER__CALL_TIMEOUT="1", ROOMD_IM__TIMEOUT="0.2") as (api, fake):
        fake.behave("hang")
        started = trio.current_time()
        answer = await api.post("merge_stream", merging(MERGE_INFO), kind="live_room")
        seconds = trio.current_time() - started
        fake.behave("ok")
        after = await api.post("merge_stream", merging(MERGE_INFO), kind="live_room")
    assert 0.9 < seconds < 2.5  # the call_timeout, not live.api_timeout's 5 s
    assert answer.code == 6
    assert answer.body["result"] == {"code": -1, "message": "no answer from the mixing API by the request's deadline"}
    assert after.code == 0 and [call.answered for call in fake.calls] == ["hang", "ok"]


async def test_the_api_key_and_the_signs_never_reach_the_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(dir=str(tmp_path), level="DEBUG"))
    try:
        async with open_mix_world() as (api, fake):
            codes = [(await api.post("merge_stream", merging(MERGE_INFO), kind="live_room")).code]
            for mode in ("error_code", "close", "http_500", "not_json"):
                fake.behave(mode)
                codes.append((await api.post("merge_stream", merging(MERGE_INFO), kind="live_room")).code)
            assert fake.server is not None
            fake.server.stop_listening()
            codes.append((await api.post("merge_stream", merging(MERGE_INFO), kind="live_room")).code)
        assert flush_logs()
    finally:
        logger.remove()
        logger.configure(patcher=None, extra={})
        logger.add(sys.stderr)
    assert codes == [0, 0, 6, 6, 6, 6]
    console = capsys.readouterr().err
    files = written_files(tmp_path)
    assert any("/response/" in str(path) and "merge_stream" in text for path, text in files.items())
    assert "merge_stream room=mix_room user=anchor tencent_code=0 attempts=1" in console
    assert "merge_stream room=mix_room user=anchor tencent_code=-5 attempts=1" in console
    assert "merge_stream failed room=mix_room user=anchor attempts=3: no answer from the mixing API" in console
    signs = set(fake.signs)
    assert len(signs) >= 1 and all(len(sign) == 32 for sign in signs)
    for text in (console, *files.values()):
        assert API_KEY not in text
        assert not any(sign in text for sign in signs)


def written_files(directory: Path) -> dict[Path, str]:
    return {path: path.read_text() for path in directory.rglob("*") if path.is_file()}


# --- the outbound path alone, under the mock clock ------------------------------------------------

LIVE = LiveSettings(app_id=APP_ID, api_key=API_KEY, api_base_url="http://mixer.test/", api_timeout=2.0)
NOW = 1_750_000_000


@asynccontextmanager
async def mixer_over(handler: Any, settings: LiveSettings = LIVE) -> AsyncIterator[StreamMixer]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        yield StreamMixer(settings, http)


async def test_the_mixer_posts_the_json_text_labelled_as_a_form_to_the_signed_url() -> None:
    seen: list[httpx.Request] = []

    async def tencent(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 0, "message": "Success!"})

    async with mixer_over(tencent) as mixer:
        mixed = await mixer.start_mix(b'{"a":1}', room_id="r", user_id="u", now=NOW, deadline=math.inf)
    assert mixed.result == {"code": 0, "message": "Success!"} and mixed.error == ""
    [request] = seen
    assert request.method == "POST" and request.content == b'{"a":1}'
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert str(request.url) == (
        f"http://mixer.test/common_access?appid={APP_ID}&interface=mix_streamv2.start_mix_stream_advanced"
        f"&t={NOW + 60}&sign={mix_sign(API_KEY, NOW + 60)}"
    )


async def test_only_transport_errors_are_retried_and_at_most_twice(autojump_clock: trio.abc.Clock) -> None:
    attempts: list[float] = []

    async def refusing(request: httpx.Request) -> httpx.Response:
        attempts.append(trio.current_time())
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with mixer_over(refusing) as mixer:
        started = trio.current_time()
        mixed = await mixer.start_mix(b"{}", room_id="r", user_id="u", now=NOW, deadline=math.inf)
    assert mixed.result is None and mixed.error.startswith("no answer from the mixing API (ConnectError: ")
    assert [round(at - started, 3) for at in attempts] == [0, 0.1, 0.3]  # backoff 0.1 s, then 0.2 s

    answered: list[int] = []

    async def failing(request: httpx.Request) -> httpx.Response:
        answered.append(1)
        return httpx.Response(502, text="bad gateway")

    async with mixer_over(failing) as mixer:
        mixed = await mixer.start_mix(b"{}", room_id="r", user_id="u", now=NOW, deadline=math.inf)
    assert mixed.error == "the mixing API answered HTTP 502" and answered == [1]


async def test_a_call_gets_live_api_timeout_and_never_past_its_deadline(autojump_clock: trio.abc.Clock) -> None:
    async def hanging(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError

    async with mixer_over(hanging) as mixer:
        started = trio.current_time()
        by_timeout = await mixer.start_mix(b"{}", room_id="r", user_id="u", now=NOW, deadline=math.inf)
        timed_out_after = trio.current_time() - started
        started = trio.current_time()
        by_deadline = await mixer.start_mix(b"{}", room_id="r", user_id="u", now=NOW, deadline=started + 0.5)
        deadline_after = trio.current_time() - started
    assert timed_out_after == pytest.approx(2.0) and deadline_after == pytest.approx(0.5)
    assert by_timeout.error == "no answer from the mixing API within live.api_timeout (2 s)"
    assert by_deadline.error == "no answer from the mixing API by the request's deadline"


async def test_calls_beyond_the_limit_wait_for_a_slot_within_their_deadline(autojump_clock: trio.abc.Clock) -> None:
    release = trio.Event()
    arrived: list[float] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        arrived.append(trio.current_time())
        await release.wait()
        return httpx.Response(200, json={"code": 0})

    outcomes: list[str] = []
    roomy = LiveSettings(app_id=APP_ID, api_key=API_KEY, api_timeout=60.0)
    async with mixer_over(slow, roomy) as mixer, trio.open_nursery() as nursery:
        for _ in range(MAX_CONCURRENT_CALLS):
            nursery.start_soon(partial(mixer.start_mix, b"{}", room_id="r", user_id="u", now=NOW, deadline=math.inf))
        await trio.sleep(1)
        assert mixer.calls_in_flight == MAX_CONCURRENT_CALLS and len(arrived) == MAX_CONCURRENT_CALLS
        started = trio.current_time()
        busy = await mixer.start_mix(b"{}", room_id="r", user_id="u", now=NOW, deadline=started + 2)
        assert trio.current_time() - started == pytest.approx(2)
        outcomes.append(busy.error)

        async def waiting() -> None:
            mixed = await mixer.start_mix(b"{}", room_id="r", user_id="u", now=NOW, deadline=math.inf)
            outcomes.append(str(mixed.result))

        nursery.start_soon(waiting)
        await trio.sleep(1)
        assert len(arrived) == MAX_CONCURRENT_CALLS  # still waiting for a slot
        release.set()
    assert outcomes == [
        f"all {MAX_CONCURRENT_CALLS} mixing calls were busy until the request's deadline",
        "{'code': 0}",
    ]
    assert len(arrived) == MAX_CONCURRENT_CALLS + 1
