"""Audiences (viewers who do not push) and custom room fields: the later clients' live_room endpoints.

Every kind has both; a kind whose `max_audiences` is 0 answers the audience
endpoints with code 1. The rules, and where they differ from the later
Node.js server:

- add_audience `{roomID, userID, userInfo}`: `userInfo` is opaque (the
  clients send a JSON string, one of them with a trailing newline) and kept
  verbatim; at most 1024 bytes of UTF-8, code 1 beyond (code 10's message
  names roomInfo). An audience already listed gets its userInfo updated and
  keeps its place. A new one past `max_audiences` is code 5001.
- delete_audience `{roomID, userID}`: code 0 also when that user is not an
  audience, as the later server answers.
- get_audiences `{roomID}`: `audienceCount` is always the length of
  `audiences` (the later server's count drifted with duplicates, refusals
  and unknown deletes).
- set_custom_field `{roomID, fieldName, operation, value?}`: `set` stores
  `value` (a string, required; the later server ignored it), `inc`/`dec`
  count from 0 for a missing field or from the integer the field holds (an
  int, or a string in canonical decimal such as "10"), within ±(2^53 - 1).
  At most 16 fields per room, names 1-64 bytes, values at most 1024 bytes.
  In token mode only a member (pusher) of the room may set fields (code 5).
- `custom`, in these replies and in get_pushers and get_room_list, is the
  fields as a JSON-encoded string (`"{\\"likes\\":3}"`), as the later server
  sent `JSON.stringify(room.custom)`.
"""

from __future__ import annotations

import json
from typing import Any

from roomd.actors.messages import (
    AddAudience,
    Audience,
    CustomFields,
    CustomOperation,
    GetAudiences,
    GetRoom,
    RemoveAudience,
    SetCustomField,
)
from roomd.actors.replies import Ok, Refused
from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, RequestError, ok_reply, refusal_reply
from roomd.web.room_call import Handler, RoomCall
from roomd.web.validation import Params

MAX_USER_INFO_BYTES = 1024
MAX_FIELD_NAME_BYTES = 64
MAX_FIELD_VALUE_BYTES = 1024
OPERATIONS = {operation.value: operation for operation in CustomOperation}


def custom_json(custom: CustomFields) -> str:
    """The custom fields as the later clients read them: a JSON object, encoded as a string."""
    return json.dumps(dict(custom), ensure_ascii=False, separators=(",", ":"))


# --- audiences -------------------------------------------------------------------


async def add_audience(ctx: AppContext, call: RoomCall) -> Reply:
    _require_audiences(ctx, call.kind)
    params = call.params
    room_id = params.ident("roomID")
    user_id = params.ident("userID")
    user_info = _bytes_at_most(params, "userInfo", MAX_USER_INFO_BYTES)
    added = await call.router.call_room(
        call.kind, room_id, AddAudience(Audience(user_id, user_info)), deadline=call.deadline
    )
    return _render(added)


async def delete_audience(ctx: AppContext, call: RoomCall) -> Reply:
    _require_audiences(ctx, call.kind)
    params = call.params
    room_id = params.ident("roomID")
    user_id = params.ident("userID")
    return _render(await call.router.call_room(call.kind, room_id, RemoveAudience(user_id), deadline=call.deadline))


async def get_audiences(ctx: AppContext, call: RoomCall) -> Reply:
    _require_audiences(ctx, call.kind)
    room_id = call.params.ident("roomID")
    found = await call.router.call_room(call.kind, room_id, GetAudiences(), deadline=call.deadline)
    if isinstance(found, Refused):
        return refusal_reply(found)
    audiences = [{"userID": a.user_id, "userInfo": a.user_info} for a in found.value]
    return ok_reply(audienceCount=len(audiences), audiences=audiences)


def _require_audiences(ctx: AppContext, kind: str) -> None:
    if ctx.kind(kind).max_audiences == 0:
        raise RequestError(Code.BAD_PARAMETER, f"{kind} rooms have no audiences (kinds.{kind}.max_audiences is 0)")


# --- custom fields -----------------------------------------------------------------


async def set_custom_field(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    room_id = params.ident("roomID")
    name = _bytes_at_most(params, "fieldName", MAX_FIELD_NAME_BYTES)
    if not name:
        raise RequestError(Code.BAD_PARAMETER, "fieldName must not be empty")
    operation = OPERATIONS.get(params.required_string("operation", max_chars=16))
    if operation is None:
        raise RequestError(Code.BAD_PARAMETER, f"operation must be one of {', '.join(OPERATIONS)}")
    value = None
    if operation is CustomOperation.SET:  # inc and dec take no value
        value = _bytes_at_most(params, "value", MAX_FIELD_VALUE_BYTES)
    request = SetCustomField(name, operation, value, member=params.caller)
    changed = await call.router.call_room(call.kind, room_id, request, deadline=call.deadline)
    if isinstance(changed, Refused):
        return refusal_reply(changed)
    return ok_reply(custom=custom_json(changed.value))


async def get_custom_info(ctx: AppContext, call: RoomCall) -> Reply:
    room_id = call.params.ident("roomID")
    found = await call.router.call_room(call.kind, room_id, GetRoom(), deadline=call.deadline)
    if isinstance(found, Refused):
        return refusal_reply(found)
    return ok_reply(custom=custom_json(found.value.custom))


# --- helpers -----------------------------------------------------------------------


def _bytes_at_most(params: Params, name: str, limit: int) -> str:
    """A required string of at most `limit` bytes of UTF-8."""
    value = params.required_string(name)
    size = len(value.encode("utf-8"))
    if size > limit:
        raise RequestError(Code.BAD_PARAMETER, f"{name} is {size} bytes of UTF-8; at most {limit} are allowed")
    return value


def _render(result: Ok[Any] | Refused) -> Reply:
    return refusal_reply(result) if isinstance(result, Refused) else ok_reply()


ENDPOINTS: dict[str, Handler] = {
    "add_audience": add_audience,
    "delete_audience": delete_audience,
    "get_audiences": get_audiences,
    "set_custom_field": set_custom_field,
    "get_custom_info": get_custom_info,
}
