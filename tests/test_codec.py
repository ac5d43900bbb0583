"""Every value that crosses the room router survives bytes and back, and nothing else is read."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing

import msgpack
import pytest

from roomd.actors import codec, messages, replies, stats
from roomd.actors.messages import (
    AddAudience,
    AdminClose,
    AdminPage,
    AdminRoom,
    AdminUpdate,
    Audience,
    AudienceRemoved,
    AudienceSaved,
    CloseReason,
    CreateRoom,
    CustomFieldSaved,
    CustomOperation,
    Describe,
    Destroy,
    EventDelivered,
    EventQueued,
    ForwardedCall,
    ForwardedCreate,
    GetAudiences,
    GetRoom,
    GroupDestroyed,
    Heartbeat,
    Heartbeats,
    Inspect,
    Join,
    Kick,
    Leave,
    LeaveReason,
    MemberDeparted,
    MemberDetail,
    MemberInfo,
    MemberRemoved,
    MemberSaved,
    MembersKnown,
    MemberView,
    Moved,
    RelayedHeartbeats,
    RemoveAudience,
    RoomChanged,
    RoomClosed,
    RoomDescription,
    RoomDetail,
    RoomRemoved,
    RoomSaved,
    RoomSnapshot,
    RoomState,
    SetCustomField,
    WatchMembers,
    WebhookEvent,
)
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.actors.stats import KindStats, RouterStats

ALICE = MemberInfo("alice", "Alice 爱丽丝", "https://a.test/a.png", "rtmp://p.test/live/1_alice?txSecret=x")
VIEW = MemberView("alice", "Alice", "", "1_alice")
SNAPSHOT = RoomSnapshot("room_1", '{"title":"t"}', "alice", (VIEW, MemberView("bob", "", "", None)))
WATCHED = RoomSnapshot("room_1", "", "alice", (VIEW,), 2, (("likes", 3), ("title", "Hi 你好")))
CAROL = Audience("carol", '{"userName":"Carol","userAvatar":""}\n')

EXAMPLES: list[object] = [
    Join(ALICE),
    Join(ALICE, "new info"),
    Leave("alice"),
    Heartbeat("alice"),
    GetRoom(),
    Destroy("alice"),
    Describe(),
    AddAudience(CAROL),
    RemoveAudience("carol"),
    GetAudiences(),
    *(SetCustomField("likes", operation) for operation in CustomOperation),
    SetCustomField("title", CustomOperation.SET, "Hi", member="alice"),
    CreateRoom("alice", "info"),
    CreateRoom("alice", "info", room_id="r1", first_member=ALICE, address="10.0.0.1"),
    Ok(None),
    Ok("room_1"),
    Ok(SNAPSHOT),
    Ok(WATCHED),
    Ok((CAROL, Audience("dave", ""))),
    Ok((("likes", -1), ("title", ""))),
    Ok(RoomDescription("root/multi_room/r", RoomState.ACTIVE, 1.5, 2, 19.25, 0, 256)),
    Ok(RoomDescription("root/multi_room/r", RoomState.CLOSED, 0.0, 0, None, 0, 256)),
    Ok(RoomDescription("root/live_room/r", RoomState.WAITING, 3.0, 0, 27.0, 1, 256, audiences=30)),
    RoomChanged(WATCHED),
    *(Refused(error, f"detail of {error.value}") for error in DomainError),
    RoomChanged(SNAPSHOT),
    *(MemberDeparted("room_1", "alice", reason) for reason in LeaveReason),
    *(RoomClosed("room_1", reason) for reason in CloseReason),
    RoomSaved("multi_room", "room_1", "alice", "info"),
    RoomSaved("multi_room", "room_1", "alice", "info", created=True),
    MemberSaved("multi_room", "room_1", ALICE),
    MemberRemoved("multi_room", "room_1", "alice"),
    RoomRemoved("multi_room", "room_1"),
    GroupDestroyed("multi_room", "room_1"),
    AudienceSaved("live_room", "room_1", CAROL),
    AudienceRemoved("live_room", "room_1", "carol"),
    CustomFieldSaved("live_room", "room_1", "likes", 3),
    CustomFieldSaved("live_room", "room_1", "title", "Hi"),
    RouterStats(
        kinds={
            "multi_room": KindStats(1, 2, 3, {CloseReason.IDLE: 4}, {LeaveReason.TIMEOUT: 5}, 6, 7, 8),
            "double_room": KindStats(0, 0, 0),
            "live_room": KindStats(0, 1, 1, audiences=29),
        },
        im_calls={("create_group", "ok"): 9},
        im_queue_depth=1,
        store_failed_writes=2,
        cluster={"roomd_cluster_forwarded": 3.0, "roomd_cluster_redis_up": 1.0},
    ),
    Heartbeats(("alice", "bob")),
    ForwardedCall("multi_room", "room_1", Join(ALICE), 9.5),
    ForwardedCall("multi_room", "room_1", Heartbeat("alice"), 0),
    ForwardedCreate("live_room", CreateRoom("alice", "", room_id="r1", first_member=ALICE, join_if_exists=True), 3.0),
    Moved("room_1"),
    RelayedHeartbeats((("multi_room", "room_1", "alice"), ("live_room", "r2", "bob"))),
    MembersKnown("multi_room", "room_1", ("alice", "bob"), "node-a-1234abcd"),
    MembersKnown("multi_room", "room_1", (), ""),
    WatchMembers("multi_room", "room_1", "node-a-1234abcd"),
    Inspect(),
    Kick("bob"),
    AdminClose(),
    AdminUpdate("new info", (("likes", 2), ("title", "x"))),
    AdminUpdate(None, ()),
    Ok(
        RoomDetail(
            "room_1",
            RoomState.ACTIVE,
            "alice",
            "info",
            12.5,
            None,
            (MemberDetail("alice", "Alice", "", 19.75),),
            (CAROL,),
            (("likes", 3),),
        )
    ),
    Ok(RoomDetail("room_2", RoomState.WAITING, "bob", "", 1.0, 29.0, (), (), ())),
    AdminPage((AdminRoom("room_1", "active", "alice", "info", 2, 0, 3.25),), "17"),
    AdminPage((), None),
    EventQueued(
        "multi_room",
        "room_1",
        WebhookEvent("evt_1", "member_left", 1764480000.5, "multi_room", "room_1", "bob", "timeout"),
    ),
    EventQueued("live_room", "r", WebhookEvent("evt_2", "room_created", 1.0, "live_room", "r")),
    EventDelivered("multi_room", "room_1", 17),
]


@pytest.mark.parametrize("value", EXAMPLES, ids=lambda v: type(v).__name__)
def test_every_router_value_round_trips(value: object) -> None:
    data = codec.encode(value)
    back = codec.decode(data)
    assert back == value and type(back) is type(value)
    assert codec.encode(back) == data


def test_the_examples_cover_every_wire_type() -> None:
    def types_in(value: object) -> set[type]:
        found = {type(value)}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                found |= types_in(getattr(value, f.name))
        elif isinstance(value, (tuple, list)):
            for item in value:
                found |= types_in(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                found |= types_in(key) | types_in(item)
        return found

    seen = set().union(*(types_in(v) for v in EXAMPLES))
    assert set(codec.WIRE_TYPES) <= seen


def test_every_message_reply_report_and_change_is_a_wire_type() -> None:
    defined = {
        obj
        for module in (messages, replies, stats)
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ == module.__name__ and (dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum))
    }
    unions = (messages.RoomMessage, messages.RoomReport, messages.Change)
    assert {t for union in unions for t in typing.get_args(union)} <= defined
    assert defined == set(codec.WIRE_TYPES)


def test_bytes_naming_anything_else_are_refused() -> None:
    for name in ("Path", "os.system", "Settings", "_Owner"):
        forged = msgpack.packb(msgpack.ExtType(1, msgpack.packb([name, "x"])))
        with pytest.raises(codec.CodecError):
            codec.decode(forged)
    with pytest.raises(codec.CodecError):
        codec.decode(msgpack.packb(msgpack.ExtType(9, b"")))
    with pytest.raises(codec.CodecError):
        codec.decode(b"\xc1")  # never used in msgpack
    with pytest.raises(codec.CodecError):
        codec.decode(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["Leave", "a", "b", "c"]))))


def test_a_value_that_does_not_cross_the_router_cannot_be_encoded() -> None:
    with pytest.raises(TypeError):
        codec.encode(object())
    with pytest.raises(TypeError):
        codec.encode({1, 2})


def _forged(name: str, *fields: object) -> bytes:
    return msgpack.packb(msgpack.ExtType(1, codec.encode([name, *fields])))


def test_fields_of_the_wrong_type_are_refused() -> None:
    member = MemberInfo("a", "b", "c", "d")
    for forged in (
        _forged("Heartbeat", ["x"]),  # a list where a userID goes
        _forged("Heartbeat", 7),
        _forged("Refused", "no_room", "x"),  # the enum's value, not the enum
        _forged("RoomSnapshot", "r", "i", "c", [["a"]]),  # members as a list of lists
        _forged("Join", member, True),
        _forged("MemberDeparted", "r", "u", "left"),
        _forged("RouterStats", {}, {"create_group": 1}, 0, 0),  # a key that is not (api, outcome)
        _forged("CustomFieldSaved", "k", "r", "likes", 1.5),  # a custom field is a string or an integer
        _forged("CustomFieldSaved", "k", "r", "likes", True),
        _forged("RoomSnapshot", "r", "i", "c", (), 0, (("likes", None),)),
        _forged("SetCustomField", "likes", "inc"),  # the enum's value, not the enum
    ):
        with pytest.raises(codec.CodecError):
            codec.decode(forged)
    assert codec.decode(codec.encode(Join(member, None))) == Join(member, None)


def test_values_nested_too_deeply_are_refused_not_a_crash() -> None:
    data = msgpack.packb(msgpack.ExtType(3, b"\x90"))  # ()
    expected: tuple[object, ...] = ()
    for depth in range(1, 1000):  # ((...),): each level a tuple extension holding the last
        data = msgpack.packb(msgpack.ExtType(3, b"\x91" + data))
        expected = (expected,)
        if depth == 10:
            assert codec.decode(data) == expected
    with pytest.raises(codec.CodecError, match="nested deeper"):
        codec.decode(data)
    shallow = Ok(RouterStats({"k": KindStats(0, 0, 0)}, {("a", "b"): 1}, 0, 0))
    assert codec.decode(codec.encode(shallow)) == shallow
