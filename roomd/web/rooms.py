"""The legacy room routes, `POST <prefix>/<kind>/<endpoint>`, as the RTCRoom clients call them.

Each handler checks its parameters, sends one message through the room
router and turns its answer into a `Reply`; it never touches room state
itself. The pipeline (pipeline.py) calls `answer` for every room route.
"""

from __future__ import annotations

from typing import Any

import trio

from roomd.actors.ids import new_user_id
from roomd.actors.messages import (
    CreateRoom,
    Destroy,
    GetRoom,
    Heartbeat,
    Join,
    Leave,
    MemberInfo,
    MemberView,
    RoomSnapshot,
)
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.client_address import limit_key
from roomd.qcloud.live import stream_name_from_push_url
from roomd.web import audience_routes, mixing_routes, token_auth
from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, RequestError, encode_json, ok_reply, refusal_reply
from roomd.web.pipeline import Call
from roomd.web.room_call import Handler, RoomCall
from roomd.web.validation import DEFAULT_PAGE, MAX_PAGE, Params, parse_body

MAX_USER_ID_PREFIX_CHARS = 32
WECHAT_PREFIX = "weixin"
# create_room refusals that give the creation-rate token back: the directory turned the room down before
# asking IM (BUSY may also come after it: a room that could not be saved, or the deadline passed)
REFUNDED_REFUSALS = frozenset({DomainError.ROOM_EXISTS, DomainError.LIMITED, DomainError.BUSY})
# a join-create also gets its allowance back when it only joined and that join was refused
JOIN_CREATE_REFUNDED_REFUSALS = REFUNDED_REFUSALS | {DomainError.ROOM_FULL, DomainError.NO_ROOM}


async def answer(ctx: AppContext, request: Call) -> Reply:
    """The reply to `POST <prefix>/<kind>/<endpoint>`; RequestError for input turned down."""
    values = parse_body(request.body, request.mimetype)
    caller = None
    query = request.query
    if ctx.token_mode and request.endpoint not in token_auth.OPEN_ENDPOINTS:
        caller = token_auth.authenticate(ctx, query)
        token_auth.require_acting_for_self(caller, values)
    if request.endpoint == "login":
        return await token_auth.login(ctx, Params({**query, **values}, client=request.request.client))
    if request.endpoint == "logout":
        return await token_auth.logout(ctx, caller, query)
    params = Params(values, caller=caller, client=request.request.client)
    return await ENDPOINTS[request.endpoint](ctx, RoomCall(request.kind, params, request.deadline, ctx.router))


def _render(result: Ok[Any] | Refused, **fields: Any) -> Reply:
    if isinstance(result, Refused):
        return refusal_reply(result)
    return ok_reply(**fields)


# --- identity and URLs -------------------------------------------------------


async def get_im_login_info(ctx: AppContext, call: RoomCall) -> Reply:
    return await new_identity(ctx, call.params, deadline=call.deadline)


async def new_identity(ctx: AppContext, params: Params, *, deadline: float) -> Reply:
    """A fresh userID (`userIDPrefix` + random, or the WeChat openid for `weixin` and a `code`)
    with its userSig, and in token mode a token for it."""
    prefix = params.optional_ident("userIDPrefix", max_chars=MAX_USER_ID_PREFIX_CHARS)
    code = params.string("code", required=False, max_chars=256)
    ctx.charge_login(params.client)
    user_id = None
    if prefix == WECHAT_PREFIX and code and ctx.wechat is not None and ctx.wechat.enabled:
        user_id = await ctx.wechat.openid(code, deadline=deadline)  # a reserved one is refused below
    fields = im_login_fields(ctx, user_id or new_user_id(prefix or "user"))
    if ctx.token_mode:
        issued = ctx.issue_token(fields["userID"])
        fields.update(token=issued.token, expires=issued.expires)
    return ok_reply(**fields)


def im_login_fields(ctx: AppContext, user_id: str) -> dict[str, Any]:
    if ctx.is_reserved_identity(user_id):
        raise RequestError(Code.AUTH_FAILED, f"{user_id} is a reserved identity; roomd does not sign for it")
    im = ctx.settings.im
    return {
        "userID": user_id,
        "sdkAppID": im.sdk_app_id,
        "accType": im.account_type,
        "userSig": ctx.user_sig(user_id),
    }


async def get_push_url(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    user_id = params.ident("userID")
    params.optional_ident("roomID")
    return ok_reply(pushURL=ctx.live.push_url(user_id, now=ctx.now()))


# --- rooms ------------------------------------------------------------------------


async def create_room(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    user_id = params.ident("userID")
    room_id = params.optional_ident("roomID", empty_is_absent=True)  # the Windows client sends "" for none
    room_info = params.info("roomInfo", "roomName", required=True)
    assert room_info is not None
    first_member = None
    if params.has("pushURL"):  # seed-era clients: the creator is also the first member
        first_member = MemberInfo(
            user_id=user_id,
            user_name=params.name("userName"),
            user_avatar=params.avatar("userAvatar"),
            push_url=own_push_url(ctx, params, user_id),
        )
    why_not = ctx.creation_limits.refusal(params.client, user_id, trio.current_time())
    if why_not is not None:
        return Reply(Code.BUSY, detail=why_not, http_status=429)
    request = CreateRoom(
        creator=user_id,
        room_info=room_info,
        room_id=room_id,
        first_member=first_member,
        address=limit_key(params.client),
    )
    created = await call.router.create_room(call.kind, request, deadline=call.deadline)
    if isinstance(created, Refused):
        if created.error in REFUNDED_REFUSALS:
            ctx.creation_limits.refund(params.client, user_id, trio.current_time())
        return refusal_reply(created)
    return ok_reply(roomID=created.value)


async def destroy_room(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    room_id = params.ident("roomID")
    user_id = params.ident("userID")
    return _render(await call.router.call_room(call.kind, room_id, Destroy(user_id), deadline=call.deadline))


async def add_pusher(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    room_id = params.ident("roomID")
    user_id = params.ident("userID")
    member = MemberInfo(
        user_id=user_id,
        user_name=params.name("userName"),
        user_avatar=params.avatar("userAvatar"),
        push_url=own_push_url(ctx, params, user_id),
    )
    room_info = params.info("roomInfo", required=False)
    joined = await call.router.call_room(call.kind, room_id, Join(member, room_info), deadline=call.deadline)
    if isinstance(joined, Refused) and joined.error is DomainError.NO_ROOM and ctx.kind(call.kind).create_on_join:
        return await _create_by_joining(ctx, call, room_id, member, room_info or "")
    return _render(joined)


async def _create_by_joining(
    ctx: AppContext, call: RoomCall, room_id: str, member: MemberInfo, room_info: str
) -> Reply:
    """add_pusher on a roomID that does not exist (later clients): the caller makes the room, as
    its creator and first member; a client entering the same new room at once joins it."""
    client, user_id = call.params.client, member.user_id
    why_not = ctx.creation_limits.refusal(client, user_id, trio.current_time())
    if why_not is not None:
        return Reply(Code.BUSY, detail=why_not, http_status=429)
    request = CreateRoom(
        user_id, room_info, room_id=room_id, first_member=member, address=limit_key(client), join_if_exists=True
    )
    made = await call.router.create_room(call.kind, request, deadline=call.deadline)
    if isinstance(made, Refused):
        if made.error in JOIN_CREATE_REFUNDED_REFUSALS:
            ctx.creation_limits.refund(client, user_id, trio.current_time())
        return refusal_reply(made)
    room = await call.router.call_room(call.kind, room_id, GetRoom(), deadline=call.deadline)
    if isinstance(room, Ok) and room.value.creator != user_id:  # another client made it: this was a join
        ctx.creation_limits.refund(client, user_id, trio.current_time())
    return ok_reply(roomID=made.value)


async def delete_pusher(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    room_id = params.ident("roomID")
    user_id = params.ident("userID")
    return _render(await call.router.call_room(call.kind, room_id, Leave(user_id), deadline=call.deadline))


async def pusher_heartbeat(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    room_id = params.ident("roomID")
    user_id = params.ident("userID")
    return _render(await call.router.call_room(call.kind, room_id, Heartbeat(user_id), deadline=call.deadline))


async def get_pushers(ctx: AppContext, call: RoomCall) -> Reply:
    params = call.params
    room_id = params.ident("roomID")
    found = await call.router.call_room(call.kind, room_id, GetRoom(), deadline=call.deadline)
    if isinstance(found, Refused):
        return refusal_reply(found)
    snapshot: RoomSnapshot = found.value
    # the accelerateURL is also a push credential: in token mode only fellow members get it
    signed = params.caller is None or any(m.user_id == params.caller for m in snapshot.members)
    fields = room_fields(ctx, snapshot, now=ctx.now() if signed else None)
    del fields["memberCount"]
    return ok_reply(**fields)


async def get_room_list(ctx: AppContext, call: RoomCall) -> Reply:
    """A page of rooms, cut to fewer rooms (`truncated`) to stay under server.max_reply_bytes.

    No signed URL is listed (accelerateURL is ""), so each room's entry only
    changes with the room and is encoded once per change, not once per request.
    """
    params = call.params
    index = params.count("index", default=0)
    asked = params.count("cnt", default=DEFAULT_PAGE)
    count = min(asked, MAX_PAGE)
    budget = ctx.settings.server.max_reply_bytes - REPLY_OVERHEAD_BYTES
    entries: list[bytes] = []
    size = 0
    truncated = False
    listing = await call.router.page(call.kind, index, count)
    if isinstance(listing, Refused):
        return _render(listing)
    for listed in listing:
        entry = _listing_entry(ctx, listed)
        if entries and size + len(entry) + 1 > budget:
            truncated = True
            break
        entries.append(entry)
        size += len(entry) + 1
    rooms = b'"rooms":[' + b",".join(entries) + b"]"
    said: dict[str, Any] = {"cnt": MAX_PAGE} if asked > MAX_PAGE else {}  # at most MAX_PAGE: said, not silent
    if truncated:
        said["truncated"] = True
    return Reply(Code.OK, said, raw_fields=rooms)


REPLY_OVERHEAD_BYTES = 128  # code, message, truncated and the brackets around the rooms


# A room of 6 members with every field at its maximum in plain text lists in about 28 KB. Text that JSON
# must escape (control characters: 6 bytes each) makes entries of up to 175 KB, which are not kept:
# a client could otherwise make each of its rooms cost that much more memory.
MAX_KEPT_ENTRY_BYTES = 32 * 1024


def _listing_entry(ctx: AppContext, room: RoomSnapshot) -> bytes:
    """The room's listing entry, encoded once per snapshot (a room makes a new one per change)
    unless it is larger than MAX_KEPT_ENTRY_BYTES."""
    entry = ctx.listing_entries.get(room)
    if entry is None:
        entry = encode_json(room_fields(ctx, room, now=None))
        if len(entry) <= MAX_KEPT_ENTRY_BYTES:
            ctx.listing_entries[room] = entry
    return entry


def own_push_url(ctx: AppContext, params: Params, user_id: str) -> str:
    """The pushURL parameter; in token mode it must push the caller's own stream, so that
    nobody gets URLs signed for somebody else's stream (an accelerateURL is one)."""
    push_url = params.push_url()
    if ctx.token_mode:
        own = ctx.live.stream_name(user_id)
        if stream_name_from_push_url(push_url) != own:
            raise RequestError(
                Code.BAD_PARAMETER,
                f"pushURL must push the stream {own} (as get_push_url makes it), not another stream",
            )
    return push_url


# --- rendering ------------------------------------------------------------------


def room_fields(ctx: AppContext, room: RoomSnapshot, *, now: int | None) -> dict[str, Any]:
    """A room as clients read it; `now` None leaves every accelerateURL empty (unsigned)."""
    live = ctx.live
    creator_stream = next(
        (m.stream for m in room.members if m.user_id == room.creator and m.stream), None
    ) or live.stream_name(room.creator)
    return {
        "roomID": room.room_id,
        "roomName": room.room_info,
        "roomInfo": room.room_info,
        "roomCreator": room.creator,
        "mixedPlayURL": live.mixed_play_url(creator_stream),
        "memberCount": len(room.members),
        "audienceCount": room.audience_count,
        "custom": audience_routes.custom_json(room.custom),
        "pushers": [pusher_fields(ctx, m, now=now) for m in room.members],
    }


def pusher_fields(ctx: AppContext, member: MemberView, *, now: int | None) -> dict[str, Any]:
    stream = member.stream or ctx.live.stream_name(member.user_id)
    return {
        "userID": member.user_id,
        "userName": member.user_name,
        "userAvatar": member.user_avatar,
        "accelerateURL": ctx.live.accelerate_url(stream, now=now) if now is not None else "",
    }


ENDPOINTS: dict[str, Handler] = {
    **audience_routes.ENDPOINTS,
    **mixing_routes.ENDPOINTS,
    "get_im_login_info": get_im_login_info,
    "get_push_url": get_push_url,
    "create_room": create_room,
    "destroy_room": destroy_room,
    "add_pusher": add_pusher,
    "delete_pusher": delete_pusher,
    "get_pushers": get_pushers,
    "pusher_heartbeat": pusher_heartbeat,
    "get_room_list": get_room_list,
}

KNOWN_ENDPOINTS = frozenset({*ENDPOINTS, "login", "logout"})
