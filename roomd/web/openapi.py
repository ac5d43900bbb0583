"""The OpenAPI 3.1 description of roomd's HTTP API, served at `GET /openapi.json`.

Built from the settings (route prefix, kinds) so that it always lists the
routes this server actually has.
"""

from __future__ import annotations

from typing import Any

from roomd.config import Settings
from roomd.web.envelope import MESSAGES

ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[^\s/?#&]+$"}
NAME = {"type": "string", "maxLength": 256}
AVATAR = {"type": "string", "maxLength": 1024}
URL = {"type": "string", "maxLength": 2048, "pattern": r"^(rtmp|https?)://[^\s]+$"}
INFO = {"type": "string", "description": "at most 1024 bytes of UTF-8 (code 10 beyond)"}
COUNT = {"type": "integer", "minimum": 0}

PUSHER = {
    "type": "object",
    "properties": {"userID": ID, "userName": NAME, "userAvatar": AVATAR, "accelerateURL": {"type": "string"}},
}
ROOM_PROPERTIES: dict[str, dict[str, Any]] = {
    "roomID": ID,
    "roomName": {"type": "string"},
    "roomInfo": {"type": "string"},
    "roomCreator": ID,
    "mixedPlayURL": {"type": "string"},
    "memberCount": COUNT,
    "audienceCount": COUNT,
    "custom": {"type": "string", "description": "the room's custom fields as a JSON-encoded object"},
    "pushers": {"type": "array", "items": PUSHER},
}
CUSTOM = {"custom": ROOM_PROPERTIES["custom"]}
USER_INFO = {"type": "string", "description": "opaque, at most 1024 bytes of UTF-8"}
ROOM = {"type": "object", "properties": ROOM_PROPERTIES}

# endpoint -> (summary, request body properties, required, reply fields)
ROOM_ENDPOINTS: dict[str, tuple[str, dict[str, Any], list[str], dict[str, Any]]] = {
    "get_im_login_info": (
        "A fresh userID and its userSig",
        {"userIDPrefix": {**ID, "maxLength": 32}, "code": {"type": "string"}},
        [],
        {"userID": ID, "sdkAppID": COUNT, "accType": {"type": "string"}, "userSig": {"type": "string"}},
    ),
    "get_push_url": ("A signed push URL", {"userID": ID, "roomID": ID}, ["userID"], {"pushURL": {"type": "string"}}),
    "create_room": (
        "Create a room (seed era: the creator joins at once when pushURL is given)",
        {
            "userID": ID,
            "roomID": ID,
            "roomInfo": INFO,
            "roomName": INFO,
            "userName": NAME,
            "userAvatar": AVATAR,
            "pushURL": URL,
        },
        ["userID"],
        {"roomID": ID},
    ),
    "destroy_room": ("Close a room (its creator only)", {"roomID": ID, "userID": ID}, ["roomID", "userID"], {}),
    "add_pusher": (
        "Join a room, or update one's name/avatar/pushURL",
        {"roomID": ID, "userID": ID, "userName": NAME, "userAvatar": AVATAR, "pushURL": URL, "roomInfo": INFO},
        ["roomID", "userID", "userName", "pushURL"],
        {},
    ),
    "delete_pusher": ("Leave a room", {"roomID": ID, "userID": ID}, ["roomID", "userID"], {}),
    "pusher_heartbeat": ("Stay in a room", {"roomID": ID, "userID": ID}, ["roomID", "userID"], {}),
    "get_pushers": (
        "A room and its members",
        {"roomID": ID},
        ["roomID"],
        {k: v for k, v in ROOM_PROPERTIES.items() if k != "memberCount"},
    ),
    "get_room_list": (
        "Rooms with members, in creation order",
        {
            "index": COUNT,
            "cnt": {**COUNT, "description": "at most 100 rooms come back; over it the reply says cnt: 100"},
        },
        [],
        {
            "rooms": {"type": "array", "items": ROOM},
            "cnt": {**COUNT, "description": "present when the cnt asked for was over 100: the page holds at most 100"},
            "truncated": {"type": "boolean", "description": "the page was cut to stay within server.max_reply_bytes"},
        },
    ),
    "merge_stream": (
        "Have Tencent's live mixing API mix the room's streams (members only; needs live.app_id and live.api_key)",
        {
            "roomID": ID,
            "userID": ID,
            "mergeParams": {
                "description": "the mixing parameters: a JSON object, or a string holding one (code 10 otherwise)",
                "anyOf": [{"type": "object"}, {"type": "string"}],
            },
        },
        ["roomID", "userID", "mergeParams"],
        {"result": {"type": "object", "description": "Tencent's reply; with code 6 {code: -1, message}"}},
    ),
    "add_audience": (
        "Watch a room without pushing (kinds with max_audiences > 0)",
        {"roomID": ID, "userID": ID, "userInfo": USER_INFO},
        ["roomID", "userID", "userInfo"],
        {},
    ),
    "delete_audience": ("Stop watching a room", {"roomID": ID, "userID": ID}, ["roomID", "userID"], {}),
    "get_audiences": (
        "A room's audiences in joining order",
        {"roomID": ID},
        ["roomID"],
        {
            "audienceCount": COUNT,
            "audiences": {
                "type": "array",
                "items": {"type": "object", "properties": {"userID": ID, "userInfo": USER_INFO}},
            },
        },
    ),
    "set_custom_field": (
        "Set, increment or decrement one of a room's custom fields",
        {
            "roomID": ID,
            "fieldName": {"type": "string", "minLength": 1, "maxLength": 64},
            "operation": {"type": "string", "enum": ["set", "inc", "dec"]},
            "value": {"type": "string", "description": "for set: at most 1024 bytes of UTF-8"},
        },
        ["roomID", "fieldName", "operation"],
        CUSTOM,
    ),
    "get_custom_info": ("A room's custom fields", {"roomID": ID}, ["roomID"], CUSTOM),
    "login": (
        "Trade a userSig for a token",
        {
            "sdkAppID": {"type": "string"},
            "accountType": {"type": "string"},
            "userID": ID,
            "userSig": {"type": "string"},
        },
        ["userID", "userSig"],
        {"userID": ID, "token": {"type": "string"}, "expires": COUNT},
    ),
    "logout": ("Revoke the token in the query", {}, [], {}),
}


def envelope_schema(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "integer", "enum": sorted(int(c) for c in MESSAGES)},
            "message": {"type": "string"},
            "detail": {"type": "string"},
            **fields,
        },
    }


def _json_reply(description: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": envelope_schema(fields)}}}


def build_openapi(settings: Settings) -> dict[str, Any]:
    prefix = settings.server.route_prefix
    paths: dict[str, Any] = {}
    errors = {
        "400": _json_reply("the body is not JSON, a JSON object or form encoding", {}),
        "413": _json_reply("the body is larger than server.max_body_bytes", {}),
        "429": _json_reply("a creation or credential limit of [limits] or kinds.* (code 12, detail says which)", {}),
        "503": _json_reply("busy or shutting down (code 12)", {}),
    }
    for kind in settings.kinds:
        for endpoint, (summary, properties, required, reply) in ROOM_ENDPOINTS.items():
            paths[f"{prefix}/{kind}/{endpoint}"] = {
                "post": {
                    "operationId": f"{kind}_{endpoint}",
                    "summary": summary,
                    "tags": [kind],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": properties, "required": required}
                            }
                        },
                    },
                    "responses": {"200": _json_reply("the envelope; `code` says how it went", reply), **errors},
                }
            }
    # utility -> (query parameters, required, reply fields)
    utils: dict[str, tuple[dict[str, Any], list[str], dict[str, Any]]] = {
        "get_login_info": (  # without userID: a fresh identity, as get_im_login_info makes it
            {"userID": ID, "userIDPrefix": {**ID, "maxLength": 32}, "code": {"type": "string"}},
            [],
            {
                "userID": ID,
                "sdkAppID": COUNT,
                "accType": {"type": "string"},
                "userSig": {"type": "string"},
                "token": {"type": "string"},
                "expires": COUNT,
            },
        ),
        "logfilelist": ({}, [], {"files": {"type": "array", "items": {"type": "object"}}}),
        "check_config": (
            {},
            [],
            {"problems": {"type": "array", "items": {"type": "object"}}, "clean": {"type": "boolean"}},
        ),
    }
    for name, (query, required, reply) in utils.items():
        paths[f"{prefix}/utils/{name}"] = {
            "get": {
                "operationId": f"utils_{name}",
                "parameters": [
                    {"name": key, "in": "query", "required": key in required, "schema": schema}
                    for key, schema in query.items()
                ],
                "responses": {"200": _json_reply(name, reply)},
            }
        }
    paths[f"{prefix}/utils/getlogfile"] = {
        "get": {
            "operationId": "utils_getlogfile",
            "parameters": [{"name": "file", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "the log file", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "400": _json_reply("a name outside the log directory", {}),
                "404": _json_reply("no such log file", {}),
            },
        }
    }
    for path, description in (("/healthz", "the process is up"), ("/readyz", "ready, or 503")):
        paths[path] = {
            "get": {
                "operationId": path.strip("/"),
                "responses": {
                    "200": _json_reply(description, {"status": {"type": "string"}}),
                    "503": _json_reply("starting or shutting down", {}),
                },
            }
        }
    paths["/debug/actors"] = {
        "get": {
            "operationId": "debug_actors",
            "parameters": [{"name": "limit", "in": "query", "required": False, "schema": COUNT}],
            "responses": {"200": _json_reply("the actor tree", {"tree": {"type": "object"}})},
        }
    }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    if settings.auth.admin_key:
        paths.update(admin_paths(list(settings.kinds)))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "roomd",
            "version": "0.1.0",
            "description": "Room server for RTCRoom clients on Tencent Cloud live streaming and IM. "
            "Room routes also accept form-encoded bodies and JSON sent as text/plain. "
            "In auth.mode = token every room route except get_im_login_info and login needs ?userID=&token=.",
        },
        "paths": paths,
    }
    if settings.auth.admin_key:
        document["components"] = {"securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}}}
    return document


ADMIN_STATE = {"type": "string", "enum": ["waiting", "active", "closing"]}
ADMIN_ROOM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "kind": {"type": "string"},
        "roomID": ID,
        "state": ADMIN_STATE,
        "creator": {"type": "string"},
        "roomInfo": {"type": "string"},
        "members": COUNT,
        "audiences": COUNT,
        "age": {"type": "number", "description": "seconds since the room was made (or, one process, started)"},
    },
}


def admin_paths(kinds: list[str]) -> dict[str, Any]:
    """The admin API (only with auth.admin_key set): Authorization: Bearer <admin_key>."""
    kind = {"name": "kind", "in": "path", "required": True, "schema": {"type": "string", "enum": kinds}}
    room = {"name": "roomID", "in": "path", "required": True, "schema": ID}
    user = {"name": "userID", "in": "path", "required": True, "schema": ID}
    refused = {
        "400": _json_reply("bad input (code 1, or 10 for a roomInfo over 1024 bytes)", {}),
        "401": _json_reply("no or a wrong admin key (code 7)", {}),
        "404": _json_reply("no such kind, room (code 3) or member (code 5)", {}),
        "503": _json_reply("busy (code 12)", {}),
    }

    def operation(operation_id: str, summary: str, parameters: list[Any], fields: dict[str, Any], **more: Any) -> Any:
        return {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["admin"],
            "security": [{"admin": []}],
            "parameters": parameters,
            "responses": {"200": _json_reply(summary, fields), **refused},
            **more,
        }

    def json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
        schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    detail = {"room": {"type": "object"}}
    query = [
        {"name": "kind", "in": "query", "required": False, "schema": {"type": "string", "enum": kinds}},
        {"name": "state", "in": "query", "required": False, "schema": ADMIN_STATE},
        {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": False, "schema": {**COUNT, "minimum": 1, "maximum": 500}},
    ]
    listing = {"rooms": {"type": "array", "items": ADMIN_ROOM}, "cursor": {"type": ["string", "null"]}}
    custom = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}, "maxProperties": 16}
    return {
        "/admin/v1/rooms": {
            "get": operation("admin_rooms", "Rooms in creation order, a page at a time", query, listing)
        },
        "/admin/v1/rooms/{kind}/{roomID}": {
            "get": operation(
                "admin_room", "A room: members with their deadlines, audiences, custom fields, IM", [kind, room], detail
            ),
            "delete": operation("admin_close_room", "Close the room (reason admin_closed)", [kind, room], {}),
            "patch": operation(
                "admin_update_room",
                "Change the room's info and custom fields",
                [kind, room],
                detail,
                requestBody=json_body({"roomInfo": INFO, "custom": custom}, []),
            ),
        },
        "/admin/v1/rooms/{kind}/{roomID}/members/{userID}": {
            "delete": operation("admin_remove_member", "Remove a member (reason kicked)", [kind, room, user], {}),
        },
        "/admin/v1/rooms/{kind}/{roomID}/notify": {
            "post": operation(
                "admin_notify_room",
                "Send the room's IM group a system notification",
                [kind, room],
                {},
                requestBody=json_body({"content": {"type": "string", "minLength": 1, "maxLength": 1024}}, ["content"]),
            ),
        },
    }
