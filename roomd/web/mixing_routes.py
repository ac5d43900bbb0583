"""merge_stream: a room member asks Tencent's live mixing API to mix the room's streams.

`POST <prefix>/<kind>/merge_stream {roomID, userID, mergeParams}` for every
kind (the later clients call it on live_room, the Windows client also on
multi_room). `mergeParams` is a JSON object (Windows) or a string holding one
(the mini-program's `JSON.stringify(mergeInfo)`); either way Tencent gets it as
compact JSON. The reply carries Tencent's answer as `result`, whatever its own
`code`; when there is none (code 6) `result` is `{"code": -1, "message": why}`,
since the mini-program reads `ret.data.result.code` in every case.
"""

from __future__ import annotations

from typing import Any

from roomd.actors.messages import GetRoom
from roomd.actors.replies import Refused
from roomd.qcloud.live_mix import encode_mix_params, strict_json
from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, RequestError, ok_reply, refusal_reply, reply
from roomd.web.room_call import Handler, RoomCall
from roomd.web.validation import Params

NOT_JSON_MESSAGE = "mergeParams 不是合法的JSON格式的字符串"
MAX_MERGE_PARAMS_BYTES = 64 * 1024  # of compact JSON; server.max_body_bytes bounds it too
NOT_CONFIGURED = (
    "merge_stream is not configured: set live.app_id and live.api_key (the live mixing API's appid and key)"
)


async def merge_stream(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    room_id = params.ident("roomID")
    user_id = params.ident("userID")
    body = merge_params_body(params)
    if isinstance(body, Reply):
        return body
    mixer = ctx.mixer
    if mixer is None or not mixer.configured:
        return reply(Code.BAD_PARAMETER, detail=NOT_CONFIGURED)
    found = await call.router.call_room(call.kind, room_id, GetRoom(), deadline=call.deadline)
    if isinstance(found, Refused):
        return refusal_reply(found)
    if not any(member.user_id == user_id for member in found.value.members):
        return reply(Code.NOT_MEMBER, detail=f"{user_id} is not a member of room {room_id}; only members mix streams")
    mixed = await mixer.start_mix(body, room_id=room_id, user_id=user_id, now=ctx.now(), deadline=call.deadline)
    if mixed.result is None:
        return reply(
            Code.UPSTREAM_FAILED,
            detail=f"merge_stream got no usable answer: {mixed.error}",
            result={"code": -1, "message": mixed.error},
        )
    return ok_reply(result=mixed.result)


def merge_params_body(params: Params) -> bytes | Reply:
    """mergeParams as the body Tencent gets (compact JSON); a code 10 Reply for a string that does
    not hold a JSON object; RequestError (code 1) when missing, ill-typed, too deep or too long."""
    value: Any = params.raw("mergeParams")  # an object or a string
    if value is None:
        raise RequestError(Code.BAD_PARAMETER, "mergeParams is required")
    if isinstance(value, str):
        try:
            value = strict_json(value)
        except RecursionError:
            raise RequestError(Code.BAD_PARAMETER, "mergeParams is nested too deeply") from None
        except ValueError:
            return _not_json("mergeParams is a string that is not valid JSON")
        if not isinstance(value, dict):
            return _not_json("mergeParams is a string whose JSON is not an object")
    elif not isinstance(value, dict):
        raise RequestError(Code.BAD_PARAMETER, "mergeParams must be a JSON object or a string holding one")
    try:
        body = encode_mix_params(value)
    except UnicodeEncodeError:
        raise RequestError(Code.BAD_PARAMETER, "mergeParams is not valid Unicode text (a lone surrogate)") from None
    except ValueError:
        raise RequestError(Code.BAD_PARAMETER, "mergeParams holds NaN or Infinity, which JSON does not allow") from None
    except RecursionError:
        raise RequestError(Code.BAD_PARAMETER, "mergeParams is nested too deeply") from None
    if len(body) > MAX_MERGE_PARAMS_BYTES:
        raise RequestError(
            Code.BAD_PARAMETER,
            f"mergeParams is {len(body)} bytes of JSON; at most {MAX_MERGE_PARAMS_BYTES} are allowed",
        )
    return body


def _not_json(detail: str) -> Reply:
    return reply(Code.INFO_TOO_LONG, message=NOT_JSON_MESSAGE, detail=detail)


ENDPOINTS: dict[str, Handler] = {"merge_stream": merge_stream}
