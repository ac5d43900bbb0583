"""The admin API under /admin/v1/: list rooms, look into one, close it, remove a member, change its
info and custom fields, send its IM group a notification.

Only with `auth.admin_key` set, and only for `Authorization: Bearer <admin_key>`: without a key
the API does not exist (404). Replies are the usual JSON envelope; a room or member that does
not exist is HTTP 404, bad input 400. What changes a room goes through the room's own actor,
like a client's request, so the room logs it (with `by=admin`) and tells IM and the listing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import trio
from loguru import logger

from roomd.actors.messages import AdminClose, AdminUpdate, Inspect, Kick, RoomDetail
from roomd.actors.replies import DomainError, Refused
from roomd.actors.room import MAX_CUSTOM_FIELDS, MAX_SAFE_INTEGER
from roomd.web import console
from roomd.web.audience_routes import MAX_FIELD_NAME_BYTES, MAX_FIELD_VALUE_BYTES
from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, RequestError, ok_reply, refusal_reply, reply
from roomd.web.ops_access import require_bearer_key
from roomd.web.pipeline import Call
from roomd.web.validation import MAX_INFO_BYTES, check_ident, check_unicode, parse_count

PREFIX = "/admin/v1/"
STATES = ("waiting", "active", "closing")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_NOTIFICATION_BYTES = 1024
MAX_STREAMS = 8  # /admin/v1/events streams open at once
STREAM_LIFETIME = 300.0  # seconds one stream lasts; EventSource reconnects by itself
SNAPSHOT_INTERVAL = 1.0  # seconds between two snapshots
CONSOLE_ROOMS = 50  # rooms a snapshot shows, each asked for its members' deadlines
INSPECT_WAIT = 0.5  # seconds a snapshot waits for one room
ACTOR_ROOMS = 20  # rooms per kind in a snapshot's actor tree
_STATUS = {DomainError.NO_ROOM: 404, DomainError.NOT_MEMBER: 404, DomainError.INVALID: 400}


def _bad(detail: str) -> RequestError:
    return RequestError(Code.BAD_PARAMETER, detail, status=400)


def _refused(refusal: Refused) -> Reply:
    answer = refusal_reply(refusal)
    status = _STATUS.get(refusal.error)
    return dataclasses.replace(answer, http_status=status) if status is not None else answer


def _require_admin(ctx: AppContext, call: Call) -> None:
    """The admin key as a Bearer token; or the console's cookie, for reads, and for changes with the
    console's own header (which no other site's page can send)."""
    key = console.require_admin_key(ctx, call)
    reading = call.request.method in ("GET", "HEAD")
    if console.cookie_valid(ctx, call) and (reading or console.from_console(call)):
        return
    require_bearer_key(
        ctx,
        key=key,
        authorization=call.request.header(b"authorization"),
        client=call.request.client,
        detail="the admin API needs the header Authorization: Bearer <admin_key>",
    )


async def answer(ctx: AppContext, call: Call) -> Reply:
    _require_admin(ctx, call)
    method = call.request.method
    match _rest(call).split("/"):
        case ["events"]:
            allowed = {"GET": events}
        case ["rooms"]:
            allowed = {"GET": list_rooms}
        case ["rooms", _, _]:
            allowed = {"GET": room_detail, "DELETE": close_room, "PATCH": update_room}
        case ["rooms", _, _, "members", _]:
            allowed = {"DELETE": remove_member}
        case ["rooms", _, _, "notify"]:
            allowed = {"POST": notify_room}
        case _:
            raise RequestError(Code.BAD_PARAMETER, f"no route for {method} {call.request.path}", status=404)
    handler = allowed.get("GET" if method == "HEAD" else method)
    if handler is None:
        allow = ", ".join(sorted(allowed))
        detail = f"{call.request.path} does not accept {method}"
        return Reply(Code.BAD_PARAMETER, {}, detail, None, 405, headers=((b"allow", allow.encode()),))
    try:
        return await handler(ctx, call)
    except RequestError as error:
        if error.status == 200:  # a check shared with the room routes, which answer HTTP 200
            error.status = 400
        raise


def _rest(call: Call) -> str:
    """The path after /admin/v1/ (a target in absolute form, http://host/admin/v1/..., included)."""
    path = call.request.path
    return path[path.index(PREFIX) + len(PREFIX) :]


def _room_path(ctx: AppContext, call: Call) -> tuple[str, str]:
    parts = _rest(call).split("/")
    kind, room_id = parts[1], parts[2]
    if kind not in ctx.router.kinds:
        raise RequestError(Code.NO_ROOM, f"there is no room kind {kind}", status=404)
    check_ident("roomID", room_id)
    check_unicode("roomID", room_id)
    return kind, room_id


def _log(kind: str, room_id: str) -> Any:
    return logger.bind(actor=f"root/{kind}/{room_id}")


# --- reading ---------------------------------------------------------------------------------


async def list_rooms(ctx: AppContext, call: Call) -> Reply:
    query = call.query
    kinds = list(ctx.router.kinds)
    only = query.get("kind")
    if only is not None and only not in kinds:
        raise _bad(f"kind must be one of {', '.join(kinds)}")
    state = query.get("state") or None
    if state is not None and state not in STATES:
        raise _bad(f"state must be one of {', '.join(STATES)}")
    limit = parse_count(query.get("limit", str(DEFAULT_LIMIT)))
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise _bad(f"limit must be an integer from 1 to {MAX_LIMIT}")
    kind, _, after = query.get("cursor", "").partition(":")
    if kind and (kind not in kinds or (only is not None and kind != only)):
        raise _bad("cursor is not one this server gave for this listing")
    order = [only] if only is not None else kinds
    start = order.index(kind) if kind in order else 0
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    for position in range(start, len(order)):
        current = order[position]
        page = await ctx.router.admin_rooms(
            current, state=state, cursor=after if current == kind else "", limit=limit - len(found)
        )
        if isinstance(page, Refused):
            return _refused(page)
        found.extend(_room_entry(current, room) for room in page.rooms)
        if page.cursor is not None:
            cursor = f"{current}:{page.cursor}"
            break
        if len(found) >= limit and position + 1 < len(order):
            cursor = f"{order[position + 1]}:"
            break
    return ok_reply(rooms=found, cursor=cursor)


def _room_entry(kind: str, room: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "roomID": room.room_id,
        "state": room.state,
        "creator": room.creator,
        "roomInfo": room.room_info,
        "members": room.members,
        "audiences": room.audiences,
        "age": room.age,
    }


def _detail(ctx: AppContext, kind: str, detail: RoomDetail) -> dict[str, Any]:
    return {
        "kind": kind,
        "roomID": detail.room_id,
        "state": detail.state.value,
        "creator": detail.creator,
        "roomInfo": detail.room_info,
        "age": detail.age,
        "idleDeadlineIn": detail.idle_deadline_in,
        "members": [
            {"userID": m.user_id, "userName": m.user_name, "userAvatar": m.user_avatar, "deadlineIn": m.deadline_in}
            for m in detail.members
        ],
        "audiences": [{"userID": a.user_id, "userInfo": a.user_info} for a in detail.audiences],
        "custom": dict(detail.custom),
        "im": ctx.router.im_group_state(detail.room_id),
    }


async def room_detail(ctx: AppContext, call: Call) -> Reply:
    kind, room_id = _room_path(ctx, call)
    found = await ctx.router.call_room(kind, room_id, Inspect(), deadline=call.deadline)
    if isinstance(found, Refused):
        return _refused(found)
    return ok_reply(room=_detail(ctx, kind, found.value))


# --- changing ---------------------------------------------------------------------------------


async def close_room(ctx: AppContext, call: Call) -> Reply:
    kind, room_id = _room_path(ctx, call)
    closed = await ctx.router.call_room(kind, room_id, AdminClose(), deadline=call.deadline)
    return _refused(closed) if isinstance(closed, Refused) else ok_reply()


async def remove_member(ctx: AppContext, call: Call) -> Reply:
    kind, room_id = _room_path(ctx, call)
    user_id = call.request.path.rsplit("/", 1)[1]
    check_ident("userID", user_id)
    check_unicode("userID", user_id)
    removed = await ctx.router.call_room(kind, room_id, Kick(user_id), deadline=call.deadline)
    return _refused(removed) if isinstance(removed, Refused) else ok_reply()


async def update_room(ctx: AppContext, call: Call) -> Reply:
    kind, room_id = _room_path(ctx, call)
    body = _json_object(call.body)
    unknown = set(body) - {"roomInfo", "custom"}
    if unknown:
        raise _bad(f"unknown field {sorted(unknown)[0]}; roomInfo and custom may be changed")
    room_info = body.get("roomInfo")
    if room_info is not None:
        if not isinstance(room_info, str):
            raise _bad("roomInfo must be a string")
        check_unicode("roomInfo", room_info)
        if len(room_info.encode("utf-8")) > MAX_INFO_BYTES:
            raise RequestError(Code.INFO_TOO_LONG, f"roomInfo is over {MAX_INFO_BYTES} bytes of UTF-8", status=400)
    custom = _custom_fields(body.get("custom", {}))
    if room_info is None and not custom:
        raise _bad("nothing to change: give roomInfo or custom")
    updated = await ctx.router.call_room(kind, room_id, AdminUpdate(room_info, custom), deadline=call.deadline)
    if isinstance(updated, Refused):
        return _refused(updated)
    return ok_reply(room=_detail(ctx, kind, updated.value))


def _custom_fields(value: object) -> tuple[tuple[str, str | int], ...]:
    if not isinstance(value, dict):
        raise _bad("custom must be an object of field names to strings or integers")
    if len(value) > MAX_CUSTOM_FIELDS:
        raise _bad(f"custom holds {len(value)} fields; a room has {MAX_CUSTOM_FIELDS} at most")
    fields: list[tuple[str, str | int]] = []
    for name, field_value in value.items():
        check_unicode("custom field name", name)
        if not name or len(name.encode("utf-8")) > MAX_FIELD_NAME_BYTES:
            raise _bad(f"a custom field name is 1 to {MAX_FIELD_NAME_BYTES} bytes of UTF-8")
        if isinstance(field_value, bool) or not isinstance(field_value, (str, int)):
            raise _bad(f"custom field {name!r} must be a string or an integer")
        if isinstance(field_value, int) and abs(field_value) > MAX_SAFE_INTEGER:
            raise _bad(f"custom field {name!r} is beyond {MAX_SAFE_INTEGER}")
        if isinstance(field_value, str):
            check_unicode(f"custom field {name!r}", field_value)
            if len(field_value.encode("utf-8")) > MAX_FIELD_VALUE_BYTES:
                raise _bad(f"custom field {name!r} is over {MAX_FIELD_VALUE_BYTES} bytes of UTF-8")
        fields.append((name, field_value))
    return tuple(fields)


async def notify_room(ctx: AppContext, call: Call) -> Reply:
    kind, room_id = _room_path(ctx, call)
    content = _json_object(call.body).get("content")
    if not isinstance(content, str) or not content:
        raise _bad("content is required: the notification's text (clients read it as they like)")
    check_unicode("content", content)
    size = len(content.encode("utf-8"))
    if size > MAX_NOTIFICATION_BYTES:
        raise _bad(f"content is {size} bytes of UTF-8; at most {MAX_NOTIFICATION_BYTES}")
    sent = await ctx.router.send_notification(kind, room_id, content, deadline=call.deadline)
    if isinstance(sent, Refused):
        return _refused(sent)
    _log(kind, room_id).info("notification queued bytes={} by=admin", size)
    return ok_reply()


# --- the console's live view -----------------------------------------------------------------


async def events(ctx: AppContext, call: Call) -> Reply:
    """Server-Sent Events: a snapshot of the rooms every second, for at most STREAM_LIFETIME
    (the browser reconnects by itself); at most MAX_STREAMS at once."""
    if ctx.console_streams >= MAX_STREAMS:
        return reply(Code.BUSY, detail=f"{MAX_STREAMS} event streams are open, the most allowed", http_status=503)
    ctx.console_streams += 1  # taken now, given back once the reply is over however it ends

    def release() -> None:
        ctx.console_streams -= 1

    async def stream() -> AsyncIterator[bytes]:
        ends = trio.current_time() + STREAM_LIFETIME
        while not ctx.draining and trio.current_time() < ends:
            data = json.dumps(await snapshot(ctx), ensure_ascii=False, separators=(",", ":"))
            yield f"event: snapshot\ndata: {data}\n\n".encode()
            await trio.sleep(SNAPSHOT_INTERVAL)

    no_store = ((b"cache-control", b"no-store"), (b"x-accel-buffering", b"no"))
    content_type = "text/event-stream; charset=utf-8"
    return Reply(Code.OK, content_type=content_type, stream=stream(), headers=no_store, on_done=release)


async def snapshot(ctx: AppContext) -> dict[str, Any]:
    """What the console shows: counts by kind, the first CONSOLE_ROOMS rooms with their members'
    deadlines, the IM queue, recent closes and the actor tree."""
    stats = ctx.router.stats()
    rooms: list[dict[str, Any]] = []
    for kind in ctx.router.kinds:
        if len(rooms) >= CONSOLE_ROOMS:
            break
        page = await ctx.router.admin_rooms(kind, state=None, cursor="", limit=CONSOLE_ROOMS - len(rooms))
        if isinstance(page, Refused):
            continue
        for room in page.rooms:
            deadline = trio.current_time() + INSPECT_WAIT
            found = await ctx.router.call_room(kind, room.room_id, Inspect(), deadline=deadline)
            if not isinstance(found, Refused):
                shown = _detail(ctx, kind, found.value)
                shown["audiences"] = [{"userID": a["userID"]} for a in shown["audiences"]]  # not their userInfo
                rooms.append(shown)
    return {
        "time": round(time.time(), 3),
        "kinds": {
            kind: {"waiting": k.waiting_rooms, "active": k.active_rooms, "members": k.members, "audiences": k.audiences}
            for kind, k in stats.kinds.items()
        },
        "imQueueDepth": stats.im_queue_depth,
        "rooms": rooms,
        "closes": [
            {"time": round(at, 3), "kind": kind, "roomID": room_id, "reason": reason}
            for at, kind, room_id, reason in ctx.router.recent_closes()
        ],
        "actors": await ctx.router.describe(limit=ACTOR_ROOMS),
    }


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise _bad("the body must be a JSON object") from None
    if not isinstance(value, dict):
        raise _bad("the body must be a JSON object")
    return value
