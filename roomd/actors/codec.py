"""Bytes for everything that crosses the room router, and back: msgpack with typed extensions.

A message, a reply, a report or a change is a frozen dataclass of plain
data; `encode` writes it as msgpack, each dataclass, enum and tuple as an
extension that names its type, so `decode` gives back an equal value of
the same type. Only the types listed in `WIRE_TYPES` are read: bytes
naming anything else are refused (`CodecError`), never turned into an
arbitrary object.
"""

from __future__ import annotations

import dataclasses
import enum
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
    messages.RoomSnapshot,
    messages.RoomDescription,
    messages.Join,
    messages.Leave,
    messages.Heartbeat,
    messages.GetRoom,
    messages.Destroy,
    messages.Describe,
    messages.CreateRoom,
    messages.RoomChanged,
    messages.MemberDeparted,
    messages.RoomClosed,
    messages.RoomSaved,
    messages.MemberSaved,
    messages.MemberRemoved,
    messages.RoomRemoved,
    messages.GroupDestroyed,
    KindStats,
    RouterStats,
)
_BY_NAME: dict[str, type] = {t.__name__: t for t in WIRE_TYPES}


class CodecError(ValueError):
    """The bytes are not a value this codec writes."""


def encode(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, default=_extension, use_bin_type=True, strict_types=True)
    return packed


def decode(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, ext_hook=_value, raw=False, strict_map_key=False, use_list=True)
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


def _value(code: int, data: bytes) -> object:
    items = decode(data)
    if code == _TUPLE:
        return tuple(items)
    if code not in (_ENUM, _DATACLASS) or not items or not isinstance(items[0], str):
        raise CodecError(f"unknown extension {code}")
    kind = _BY_NAME.get(items[0])
    if kind is None:
        raise CodecError(f"{items[0]!r} is not a router type")
    try:
        return kind(items[1]) if code == _ENUM else kind(*items[1:])
    except (TypeError, ValueError) as error:
        raise CodecError(f"bad {items[0]}: {error}") from error
