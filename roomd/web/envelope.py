"""The reply envelope every client reads: `{code, message, [detail], ...fields}`.

`message` carries the original Chinese texts, which clients display; `detail`
is one English sentence naming the field or rule that failed.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any

from roomd.actors.replies import DomainError, Refused


class Code(enum.IntEnum):
    OK = 0
    BAD_PARAMETER = 1
    NO_ROOM = 3
    NOT_MEMBER = 5
    UPSTREAM_FAILED = 6
    AUTH_FAILED = 7
    INFO_TOO_LONG = 10
    ROOM_EXISTS = 11
    BUSY = 12
    ROOM_FULL = 5001
    INTERNAL = -1


MESSAGES: dict[Code, str] = {
    Code.OK: "请求成功",
    Code.BAD_PARAMETER: "请求参数错误",
    Code.NO_ROOM: "请求的房间不存在",
    Code.NOT_MEMBER: "不是房间成员",
    Code.UPSTREAM_FAILED: "服务器内部错误",
    Code.AUTH_FAILED: "鉴权失败",
    Code.INFO_TOO_LONG: "roomInfo 字符串字节长度不能超过1024字节",
    Code.ROOM_EXISTS: "房间已经存在",
    Code.BUSY: "服务器繁忙，请稍后重试",
    Code.ROOM_FULL: "超出房间人数上限",
    Code.INTERNAL: "服务器内部错误",
}
NOT_CREATOR_MESSAGE = "不是房间主人，无法销毁房间"
CONTENT_TYPE = "application/json; charset=utf-8"

# DomainError -> (code, message override or None, HTTP status)
_REFUSALS: dict[DomainError, tuple[Code, str | None, int]] = {
    DomainError.NO_ROOM: (Code.NO_ROOM, None, 200),
    DomainError.NOT_CREATOR: (Code.NO_ROOM, NOT_CREATOR_MESSAGE, 200),
    DomainError.NOT_MEMBER: (Code.NOT_MEMBER, None, 200),
    DomainError.ROOM_FULL: (Code.ROOM_FULL, None, 200),
    DomainError.INVALID: (Code.BAD_PARAMETER, None, 200),
    DomainError.ROOM_EXISTS: (Code.ROOM_EXISTS, None, 200),
    DomainError.UPSTREAM_FAILED: (Code.UPSTREAM_FAILED, None, 200),
    DomainError.BUSY: (Code.BUSY, None, 503),
    DomainError.LIMITED: (Code.BUSY, None, 429),
    DomainError.INTERNAL: (Code.INTERNAL, None, 200),
}


class RequestError(Exception):
    """A request the edge turns down before any actor sees it."""

    def __init__(self, code: Code, detail: str, *, status: int = 200) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply, before it is encoded: the same for every route and every way of serving it."""

    code: Code
    fields: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None
    message: str | None = None
    http_status: int = 200
    close_connection: bool = False
    raw_fields: bytes = b""  # more `"name":value` members, already encoded, appended last
    content_type: str = CONTENT_TYPE
    payload: bytes | None = None  # a body that is not an envelope (metrics, openapi.json), sent as is
    stream: AsyncIterable[bytes] | None = None  # a body sent in parts as they come (a log file)
    headers: tuple[tuple[bytes, bytes], ...] = ()  # more response headers (name lower-case), e.g. Allow
    on_done: Callable[[], None] | None = None  # run once the reply is sent or given up (a stream's slot)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": int(self.code), "message": self.message or MESSAGES[self.code]}
        if self.detail is not None:
            body["detail"] = self.detail
        body.update(self.fields)
        return body

    def encode(self) -> bytes:
        if self.payload is not None:
            return self.payload
        data = encode_json(self.body())
        return data[:-1] + b"," + self.raw_fields + b"}" if self.raw_fields else data


def encode_json(value: Any) -> bytes:
    """JSON as replies carry it: compact, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def reply(
    code: Code,
    *,
    detail: str | None = None,
    message: str | None = None,
    http_status: int = 200,
    **fields: Any,
) -> Reply:
    return Reply(code, fields, detail, message, http_status)


def ok_reply(**fields: Any) -> Reply:
    return Reply(Code.OK, fields)


def refusal_reply(refusal: Refused) -> Reply:
    code, message, status = _REFUSALS[refusal.error]
    return Reply(code, {}, refusal.detail, message, status)


def error_reply(error: RequestError) -> Reply:
    return Reply(error.code, {}, error.detail, None, error.status)


def raw_reply(payload: bytes, content_type: str) -> Reply:
    """A body that is not an envelope, with status 200."""
    return Reply(Code.OK, payload=payload, content_type=content_type)


def draining_reply() -> Reply:
    return Reply(Code.BUSY, {}, "the server is shutting down", None, 503, close_connection=True)
