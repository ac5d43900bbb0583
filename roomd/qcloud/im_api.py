"""Tencent IM REST: building the three group calls roomd makes and judging their replies.

    POST <base>/v4/group_open_http_svc/<api>?sdkappid=&identifier=&usersig=&random=&contenttype=json

Success is HTTP 200 with `ActionStatus == "OK"`, or one of the error codes
that mean the wanted state already holds (the group exists and is ours, or
is already gone). Everything else is judged retryable or final here, in one
place, so the IM actor never interprets a reply itself.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from roomd import upstream_replies

PATH_PREFIX = "/v4/group_open_http_svc/"
GROUP_TYPE = "AVChatRoom"
MAX_GROUP_NAME_BYTES = 30
PUSHER_CHANGE_CONTENT = json.dumps({"cmd": "notifyPusherChange", "data": ""}, separators=(",", ":"))

# IM error codes that mean "try again later": internal error, rate limits, service busy.
RETRYABLE_ERROR_CODES = frozenset({10002, 10006, 10023, 60006, 90994})


class ImApi(enum.Enum):
    CREATE_GROUP = "create_group"
    DESTROY_GROUP = "destroy_group"
    SEND_NOTIFICATION = "send_group_system_notification"


# Error codes that count as success for an API: the wanted state already holds.
_ALREADY_DONE: dict[ImApi, frozenset[int]] = {
    ImApi.CREATE_GROUP: frozenset({10025}),  # the group exists and we own it
    ImApi.DESTROY_GROUP: frozenset({10010, 10015}),  # the group is gone
    ImApi.SEND_NOTIFICATION: frozenset(),
}


@dataclass(frozen=True)
class ImRequest:
    api: ImApi
    group_id: str
    body: dict[str, Any]

    @property
    def path(self) -> str:
        return PATH_PREFIX + self.api.value


def create_group(group_id: str, name: str, *, owner: str) -> ImRequest:
    return ImRequest(
        ImApi.CREATE_GROUP,
        group_id,
        {
            "Owner_Account": owner,
            "Type": GROUP_TYPE,
            "GroupId": group_id,
            "Name": group_name(name) or group_id[:MAX_GROUP_NAME_BYTES],
        },
    )


def destroy_group(group_id: str) -> ImRequest:
    return ImRequest(ImApi.DESTROY_GROUP, group_id, {"GroupId": group_id})


def pusher_change_notification(group_id: str) -> ImRequest:
    return ImRequest(ImApi.SEND_NOTIFICATION, group_id, {"GroupId": group_id, "Content": PUSHER_CHANGE_CONTENT})


def custom_notification(group_id: str, content: str) -> ImRequest:
    """A system notification with an operator's `content` (never collapsed with others)."""
    return ImRequest(ImApi.SEND_NOTIFICATION, group_id, {"GroupId": group_id, "Content": content})


def group_name(name: str) -> str:
    """`name` cut to IM's 30-byte limit without splitting a character."""
    encoded = name.encode("utf-8")[:MAX_GROUP_NAME_BYTES]
    return encoded.decode("utf-8", errors="ignore")


def query_params(*, sdk_app_id: int, administrator: str, admin_sig: str, random: int) -> dict[str, str]:
    return {
        "sdkappid": str(sdk_app_id),
        "identifier": administrator,
        "usersig": admin_sig,
        "random": str(random),
        "contenttype": "json",
    }


class Verdict(enum.Enum):
    DONE = "done"  # the call succeeded (or its effect already held)
    RETRY = "retry"  # worth another attempt after a backoff
    FAILED = "failed"  # another attempt would fail the same way


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    error: str = ""  # what went wrong, for the log; "" when done
    already: bool = False  # done because IM said the wanted state held already (e.g. no such group)
    unsent: bool = False  # failed before the request could reach IM (no connection was made)
    may_have_landed: bool = False  # some attempt may have reached IM although no reply said so


def judge_reply(api: ImApi, status_code: int, content: bytes) -> Judgement:
    if status_code == 429 or status_code >= 500:
        return Judgement(Verdict.RETRY, f"HTTP {status_code}")
    if status_code != 200:
        return Judgement(Verdict.FAILED, f"HTTP {status_code}")
    if upstream_replies.too_large(content):
        return Judgement(Verdict.RETRY, f"reply is larger than {upstream_replies.MAX_REPLY_BYTES} bytes")
    try:
        reply = upstream_replies.loads(content)
    except upstream_replies.NotJson:
        return Judgement(Verdict.RETRY, "reply is not JSON")
    if not isinstance(reply, dict):
        return Judgement(Verdict.RETRY, "reply is not a JSON object")
    if reply.get("ActionStatus") == "OK":
        return Judgement(Verdict.DONE)
    code = reply.get("ErrorCode")
    info = upstream_replies.shortened(reply.get("ErrorInfo", ""))
    if not isinstance(code, int) or isinstance(code, bool):
        return Judgement(Verdict.RETRY, f"reply has no ErrorCode: {upstream_replies.shortened(reply)}")
    if code in _ALREADY_DONE[api]:
        return Judgement(Verdict.DONE, already=True)
    error = f"ErrorCode {code}: {info}"
    if code in RETRYABLE_ERROR_CODES:
        return Judgement(Verdict.RETRY, error)
    return Judgement(Verdict.FAILED, error)
