"""Bytes for everything that crosses the room router, and back: msgpack with typed extensions.

A message, a reply, a report or a change is a frozen dataclass of plain
data; `encode` writes it as msgpack, each dataclass, enum and tuple as an
extension that names its type, so `decode` gives back an equal value of
the same type. Bytes from elsewhere are not trusted: only the types listed
in `WIRE_TYPES` are made, each field must have its declared type, and
values nest at most `MAX_DEPTH` extensions deep; anything else is refused
with `CodecError`, never turned into an arbitrary object.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any

import msgpack

from roomd.actors import messages
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.stats import KindStats, RouterStats

_DATACLASS, _ENUM, _TUPLE = 1, 2, 3

WIRE_TYPES: tuple[type, ...] = (
    Ok,
    Refused,
    DomainError,
    messages.CloseReason,
    messages.LeaveReason,
    messages.RoomState,
    messages.MemberInfo,
    messages.MemberView,
    messages.Audience,
    messages.CustomOperation,
    messages.RoomSnapshot,
    messages.RoomDescription,
    messages.Join,
    messages.Leave,
    messages.Heartbeat,
    messages.Heartbeats,
    messages.GetRoom,
    messages.Destroy,
    messages.Describe,
    messages.AddAudience,
    messages.RemoveAudience,
    messages.GetAudiences,
    messages.SetCustomField,
    messages.CreateRoom,
    messages.MemberDetail,
    messages.AdminRoom,
    messages.AdminPage,
    messages.RoomDetail,
    messages.Inspect,
    messages.Kick,
    messages.AdminClose,
    messages.AdminUpdate,
    messages.RoomChanged,
    messages.MemberDeparted,
    messages.RoomClosed,
    messages.RoomSaved,
    messages.MemberSaved,
    messages.MemberRemoved,
    messages.RoomRemoved,
    messages.GroupDestroyed,
    messages.AudienceSaved,
    messages.AudienceRemoved,
    messages.CustomFieldSaved,
    messages.WebhookEvent,
    messages.EventQueued,
    messages.EventDelivered,
    messages.ForwardedCall,
    messages.ForwardedCreate,
    messages.Moved,
    messages.RelayedHeartbeats,
    messages.MembersKnown,
    messages.WatchMembers,
    KindStats,
    RouterStats,
)
_BY_NAME: dict[str, type] = {t.__name__: t for t in WIRE_TYPES}
MAX_DEPTH = 16  # the deepest value that crosses the router nests 5 extensions


class CodecError(ValueError):
    """The bytes are not a value this codec writes."""


def encode(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, default=_extension, use_bin_type=True, strict_types=True)
    return packed


def decode(data: bytes) -> Any:
    return _decode(data, depth=0)


def _decode(data: bytes, *, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CodecError(f"nested deeper than {MAX_DEPTH} values")
    hook = functools.partial(_value, depth=depth + 1)
    try:
        return msgpack.unpackb(data, ext_hook=hook, raw=False, strict_map_key=False, use_list=True)
    except CodecError:
        raise
    except Exception as error:
        raise CodecError(f"not a router value: {error}") from error


def _extension(value: object) -> msgpack.ExtType:
    if isinstance(value, tuple):
        return msgpack.ExtType(_TUPLE, encode(list(value)))
    name = type(value).__name__
    if _BY_NAME.get(name) is not type(value):
        raise TypeError(f"{name} does not cross the router (not in codec.WIRE_TYPES)")
    if isinstance(value, enum.Enum):
        return msgpack.ExtType(_ENUM, encode([name, value.value]))
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise TypeError(f"{name} is neither a dataclass nor an enum")
    fields = [getattr(value, f.name) for f in dataclasses.fields(value)]
    return msgpack.ExtType(_DATACLASS, encode([name, *fields]))


def _value(code: int, data: bytes, *, depth: int) -> object:
    items = _decode(data, depth=depth)
    if code == _TUPLE:
        if not isinstance(items, list):
            raise CodecError("a tuple extension must hold an array")
        return tuple(items)
    if code not in (_ENUM, _DATACLASS) or not isinstance(items, list) or not items or not isinstance(items[0], str):
        raise CodecError(f"unknown extension {code}")
    kind = _BY_NAME.get(items[0])
    if kind is None:
        raise CodecError(f"{items[0]!r} is not a router type")
    if (code == _ENUM) != issubclass(kind, enum.Enum) or (code == _ENUM and len(items) != 2):
        raise CodecError(f"{items[0]} is not written that way")
    try:
        value = kind(items[1]) if code == _ENUM else kind(*items[1:])
    except (TypeError, ValueError) as error:
        raise CodecError(f"bad {items[0]}: {error}") from error
    if code == _DATACLASS:
        for name, hint in _field_types(kind).items():
            if not _conforms(getattr(value, name), hint):
                raise CodecError(f"{items[0]}.{name} is not a {hint}")
    return value


@functools.cache
def _field_types(kind: type) -> dict[str, Any]:
    hints = typing.get_type_hints(kind)
    return {f.name: hints[f.name] for f in dataclasses.fields(kind)}


def _conforms(value: object, hint: Any) -> bool:
    """Whether a decoded `value` has the declared type `hint` (the field types of WIRE_TYPES)."""
    if isinstance(hint, typing.TypeVar):  # Ok's value: any wire value, already checked itself
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(_conforms(k, key) and _conforms(v, item) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)
