"""The node-to-node link: router values across real loopback sockets, many calls at once, every failure a value."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import trio
from loguru import logger

from roomd.actors.messages import ForwardedCall, Heartbeat, Join, Leave, MemberInfo, MemberView, RoomSnapshot
from roomd.actors.replies import DomainError, Ok, Refused
from roomd.cluster.link import (
    CALL,
    MAX_CALLS_IN_FLIGHT,
    MAX_FRAME,
    MAX_GREETING_LINKS,
    WRITE_TIMEOUT,
    Handler,
    LinkClient,
    LinkServer,
    RefusalLine,
    frame_bytes,
)

LOOPBACK = "127.0.0.1"


@dataclass
class Serving:
    server: LinkServer
    port: int
    scope: trio.CancelScope


@asynccontextmanager
async def serving(handler: Handler, *, secret: str | None = None) -> AsyncIterator[Serving]:
    """A LinkServer on a loopback port; `scope` stops the server alone."""
    server = LinkServer(secret=secret)
    scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
        with scope:
            await server.serve(handler, LOOPBACK, 0, task_status=task_status)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve)
        yield Serving(server, listeners[0].socket.getsockname()[1], scope)
        scope.cancel()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    sink = logger.add(lambda message: records.append(dict(message.record)), level="INFO")
    yield records
    logger.remove(sink)


def soon() -> float:
    return trio.current_time() + 10


async def echo(payload: Any) -> Any:
    return Ok(payload)


class Arrivals:
    """Counts calls reaching a handler; `all_in` is set when `expected` have."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.all_in = trio.Event()

    def arrive(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.all_in.set()


async def test_router_values_cross_the_link_and_come_back_equal() -> None:
    snapshot = RoomSnapshot("room-1", "info", "alice", (MemberView("alice", "Alice", "a.png", "s1"),), 2, (("n", 3),))
    values = [
        Join(MemberInfo("alice", "Alice", "a.png", "rtmp://push/s1"), "info"),
        Heartbeat("alice"),
        Ok(snapshot),
        Refused(DomainError.NO_ROOM, "room room-1 does not exist"),
    ]
    async with serving(echo) as s, LinkClient.connect(LOOPBACK, s.port) as client:
        for value in values:
            reply = await client.call(value, deadline=soon())
            assert reply == Ok(value)
            assert type(reply.value) is type(value)


async def test_a_thousand_calls_in_flight_on_one_link_each_get_their_own_reply() -> None:
    count = 1000
    calls = Arrivals(count)

    async def handler(payload: Any) -> Any:
        calls.arrive()
        await calls.all_in.wait()  # every call is in flight before any is answered
        assert isinstance(payload, Heartbeat)
        return Ok(payload.user_id)

    replies: dict[int, Any] = {}

    async def call(client: LinkClient, i: int) -> None:
        replies[i] = await client.call(Heartbeat(f"user-{i}"), deadline=soon())

    with trio.fail_after(20):
        async with serving(handler) as s, LinkClient.connect(LOOPBACK, s.port) as client:
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(call, client, i)
            assert client.in_flight == 0
            assert len(s.server.links) == 1
    assert replies == {i: Ok(f"user-{i}") for i in range(count)}


async def test_frames_ready_in_one_tick_leave_in_fewer_writes_than_frames() -> None:
    count = 100
    calls = Arrivals(count)

    async def handler(payload: Any) -> Any:
        calls.arrive()
        await calls.all_in.wait()
        return Ok(payload)

    async with serving(handler) as s, LinkClient.connect(LOOPBACK, s.port) as client:
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(partial(client.call, Heartbeat(f"u{i}"), deadline=soon()))
        (server_link,) = s.server.links
        assert client.writes < count  # the calls, queued in the same tick
        assert server_link.writes < count  # the replies, released by one event


async def test_a_full_outgoing_queue_answers_busy_at_once() -> None:
    replies: list[Any] = []

    async def call(client: LinkClient) -> None:
        replies.append(await client.call(Heartbeat("u"), deadline=soon()))

    async with (
        serving(echo) as s,
        LinkClient.connect(LOOPBACK, s.port, max_queue=2) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(10):
            nursery.start_soon(call, client)  # all queue in one tick, before the writer runs
    busy = [r for r in replies if isinstance(r, Refused)]
    assert len(busy) == 8
    assert all(r.error is DomainError.BUSY and "full" in r.detail for r in busy)
    assert replies.count(Ok(Heartbeat("u"))) == 2


async def test_a_failing_handler_answers_internal_for_that_call_only(logs: list[dict[str, Any]]) -> None:
    async def handler(payload: Any) -> Any:
        if isinstance(payload, Leave):
            raise RuntimeError("the room fell over")
        return Ok(payload)

    async with serving(handler) as s, LinkClient.connect(LOOPBACK, s.port) as client:
        replies: dict[str, Any] = {}

        async def call(name: str, payload: Any) -> None:
            replies[name] = await client.call(payload, deadline=soon())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "before", Heartbeat("a"))
            nursery.start_soon(call, "failing", Leave("b"))
            nursery.start_soon(call, "after", Heartbeat("c"))
        assert replies["before"] == Ok(Heartbeat("a"))
        assert replies["after"] == Ok(Heartbeat("c"))
        failing = replies["failing"]
        assert isinstance(failing, Refused)
        assert failing.error is DomainError.INTERNAL
        assert "the room fell over" in failing.detail
        assert await client.call(Heartbeat("d"), deadline=soon()) == Ok(Heartbeat("d"))
        assert client.closed_because is None
    (failure,) = [r for r in logs if r["message"].startswith("cluster call failed")]
    assert failure["exception"] is not None and isinstance(failure["exception"].value, RuntimeError)


async def test_an_oversized_length_closes_the_link_and_pending_calls_get_busy(logs: list[dict[str, Any]]) -> None:
    listeners = await trio.open_tcp_listeners(0, host=LOOPBACK)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def hostile_peer() -> None:
                stream = await listeners[0].accept()
                async with stream:
                    await stream.receive_some()  # the call arrived: now it is pending
                    await stream.send_all(struct.pack(">I", MAX_FRAME + 1))
                    await trio.sleep_forever()  # stays open: the client must close by itself

            nursery.start_soon(hostile_peer)
            async with LinkClient.connect(LOOPBACK, port) as client:
                reply = await client.call(Heartbeat("a"), deadline=trio.current_time() + 60)
                assert isinstance(reply, Refused) and reply.error is DomainError.BUSY
                assert "over the limit" in reply.detail
                assert client.in_flight == 0
                later = await client.call(Heartbeat("b"), deadline=trio.current_time() + 60)
                assert isinstance(later, Refused) and later.error is DomainError.BUSY
            nursery.cancel_scope.cancel()
    assert any("over the limit" in r["message"] and r["level"].name == "WARNING" for r in logs)


async def test_a_bad_frame_closes_only_its_link_never_the_server(logs: list[dict[str, Any]]) -> None:
    bad = [
        struct.pack(">I", MAX_FRAME + 1),  # never allocated
        struct.pack(">I", 3) + b"\xc7\x01\x63",  # an extension the codec refuses
        frame_bytes(CALL, 1, Heartbeat("a"))[:-1],  # the peer is gone mid-frame (its EOF below)
    ]
    with trio.fail_after(5):
        async with serving(echo) as s:
            for data in bad:
                stream = await trio.open_tcp_stream(LOOPBACK, s.port)
                async with stream:
                    await stream.send_all(data)
                    if data is bad[-1]:
                        await stream.send_eof()
                    assert await stream.receive_some() == b""  # the server closed this link
            async with LinkClient.connect(LOOPBACK, s.port) as client:
                assert await client.call(Heartbeat("a"), deadline=soon()) == Ok(Heartbeat("a"))
    reasons = [r["message"] for r in logs if r["message"].startswith("cluster link closed")]
    assert any("over the limit" in reason for reason in reasons)
    assert any("malformed frame" in reason for reason in reasons)
    assert any("within a frame" in reason for reason in reasons)


async def test_the_server_going_away_answers_pending_calls_busy() -> None:
    count = 10
    calls = Arrivals(count)

    async def handler(payload: Any) -> Any:
        calls.arrive()
        await trio.sleep_forever()

    replies: list[Any] = []
    with trio.fail_after(5):
        async with serving(handler) as s, LinkClient.connect(LOOPBACK, s.port) as client:

            async def call() -> None:
                replies.append(await client.call(Heartbeat("a"), deadline=trio.current_time() + 60))

            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(call)
                await calls.all_in.wait()
                s.scope.cancel()  # the server stops, mid-call
            assert client.closed_because == "the peer closed the connection"
    assert len(replies) == count
    assert all(isinstance(r, Refused) and r.error is DomainError.BUSY for r in replies)


async def test_a_call_past_its_deadline_is_busy_and_the_link_carries_on() -> None:
    release = trio.Event()

    async def handler(payload: Any) -> Any:
        if payload == Heartbeat("slow"):
            await release.wait()
        return Ok(payload)

    async with serving(handler) as s, LinkClient.connect(LOOPBACK, s.port) as client:
        reply = await client.call(Heartbeat("slow"), deadline=trio.current_time() + 0.05)
        assert isinstance(reply, Refused) and reply.error is DomainError.BUSY
        assert "deadline" in reply.detail
        assert client.in_flight == 0
        release.set()  # its late reply finds nobody waiting and is dropped
        assert await client.call(Heartbeat("fast"), deadline=soon()) == Ok(Heartbeat("fast"))
        assert client.closed_because is None


@pytest.mark.parametrize("given", [None, "wrong", "cluster-secret-but-longer"])
async def test_a_link_without_the_clusters_secret_is_closed_before_any_call_is_answered(given: str | None) -> None:
    answered: list[Any] = []

    async def record(payload: Any) -> Any:
        answered.append(payload)
        return Ok(payload)

    async with serving(record, secret="cluster-secret") as served:
        async with LinkClient.connect(LOOPBACK, served.port, secret=given) as client:
            reply = await client.call(Heartbeat("mallory"), deadline=soon())
        assert isinstance(reply, Refused) and reply.error is DomainError.BUSY
        assert answered == []
        assert served.server.refused_links == 1
        async with LinkClient.connect(LOOPBACK, served.port, secret="cluster-secret") as client:
            assert await client.call(Heartbeat("alice"), deadline=soon()) == Ok(Heartbeat("alice"))


async def test_connections_that_never_greet_cannot_keep_a_node_off_the_link(logs: list[dict[str, Any]]) -> None:
    """Anybody who reaches the link port can open connections: those waiting to greet are at most
    MAX_GREETING_LINKS (a newer one displaces the oldest), and their closes are logged once a second."""
    async with serving(echo, secret="cluster-secret") as served:
        silent = [await trio.open_tcp_stream(LOOPBACK, served.port) for _ in range(MAX_GREETING_LINKS * 3)]
        try:
            async with LinkClient.connect(LOOPBACK, served.port, secret="cluster-secret") as client:
                assert await client.call(Heartbeat("alice"), deadline=soon()) == Ok(Heartbeat("alice"))
            assert len(served.server.greeting) <= MAX_GREETING_LINKS
            displaced = sum(1 for stream in silent if not _still_open(stream))
            assert displaced >= MAX_GREETING_LINKS * 2 - 1  # the oldest went as newer ones came
        finally:
            for stream in silent:
                await trio.aclose_forcefully(stream)
    lines = [r["message"] for r in logs if "before it greeted" in r["message"]]
    assert 1 <= len(lines) <= 2, lines  # not one per connection
    assert "displaced before it greeted" in lines[0]


def _still_open(stream: trio.SocketStream) -> bool:
    """Whether the server has neither closed nor reset this connection (TCP_INFO state)."""
    state = stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    return state not in (7, 8)  # TCP_CLOSE, TCP_CLOSE_WAIT


class Held:
    """A handler that holds every call until `release`, counting how many it held at most."""

    def __init__(self) -> None:
        self.release, self.capped = trio.Event(), trio.Event()
        self.running = self.most = 0

    async def __call__(self, payload: Any) -> Any:
        self.running += 1
        self.most = max(self.most, self.running)
        if self.running == MAX_CALLS_IN_FLIGHT:
            self.capped.set()
        await self.release.wait()
        self.running -= 1
        return Ok(payload)


async def test_a_link_has_at_most_max_calls_in_flight_and_the_rest_wait_their_turn(autojump_clock: Any) -> None:
    held = Held()
    calls = MAX_CALLS_IN_FLIGHT + 200
    replies: list[Any] = []
    async with serving(held) as served, LinkClient.connect(LOOPBACK, served.port) as client:

        async def call(user: int) -> None:
            replies.append(await client.call(Heartbeat(f"u{user}"), deadline=trio.current_time() + 30))

        async with trio.open_nursery() as nursery:
            for user in range(calls):
                nursery.start_soon(call, user)
            await held.capped.wait()
            await trio.sleep(1)  # time for any call past the cap to arrive, were it sent
            assert held.most == MAX_CALLS_IN_FLIGHT
            assert client.in_flight == calls
            held.release.set()
    assert sorted(r.value.user_id for r in replies) == sorted(f"u{user}" for user in range(calls))


async def test_a_server_reads_no_more_from_a_peer_past_max_calls_until_it_has_answered_some(
    autojump_clock: Any,
) -> None:
    held = Held()
    calls = MAX_CALLS_IN_FLIGHT + 100
    async with serving(held) as served:
        stream = await trio.open_tcp_stream(LOOPBACK, served.port)
        async with stream:  # a peer that does not keep to the cap
            await stream.send_all(b"".join(frame_bytes(CALL, i, Heartbeat(f"u{i}")) for i in range(1, calls + 1)))
            await held.capped.wait()
            await trio.sleep(1)
            assert held.most == MAX_CALLS_IN_FLIGHT
            held.release.set()
            received = b""
            while received.count(b"u") < calls:  # every reply comes, each naming its user once
                received += await stream.receive_some(65536)
    assert held.most == MAX_CALLS_IN_FLIGHT


LARGE_CALLS = 160


async def test_calls_behind_a_thousand_slow_ones_wait_without_the_link_closing(autojump_clock: Any) -> None:
    """A node slow to answer (its handler takes 12 s) holds the calling node's calls back at the
    client, never in the socket: the caller's writes do not stall past the write timeout."""

    async def slow(payload: Any) -> Any:
        await trio.sleep(12)
        return Ok("done")

    replies: list[Any] = []
    async with serving(slow) as served, LinkClient.connect(LOOPBACK, served.port) as client:

        async def call(payload: object) -> None:
            replies.append(await client.call(payload, deadline=trio.current_time() + 60))

        async with trio.open_nursery() as nursery:
            for user in range(MAX_CALLS_IN_FLIGHT):
                nursery.start_soon(call, Heartbeat(f"u{user}"))
            for _ in range(LARGE_CALLS):  # 40 MB: more than the sockets' buffers hold
                nursery.start_soon(call, "p" * 256 * 1024)
        assert client.closed_because is None
    assert replies == [Ok("done")] * (MAX_CALLS_IN_FLIGHT + LARGE_CALLS)


async def test_a_peer_reading_slowly_but_steadily_is_not_closed(autojump_clock: Any) -> None:
    big = "x" * 900_000

    async def large(payload: Any) -> Any:
        return Ok(big)

    replies = 40
    async with serving(large) as served:
        stream = await trio.open_tcp_stream(LOOPBACK, served.port)
        async with stream:
            await stream.send_all(b"".join(frame_bytes(CALL, i, Heartbeat("u")) for i in range(1, replies + 1)))
            (link,) = served.server.links
            received, started = 0, trio.current_time()
            while received < replies * 900_000:  # 2 MB/s: the 36 MB take 18 s, but never stop coming
                await trio.sleep(0.5)
                chunk = await stream.receive_some(1024 * 1024)
                if not chunk:
                    break
                received += len(chunk)
            assert link.closed_because is None and received > replies * 900_000
            assert trio.current_time() - started > 2 * WRITE_TIMEOUT * 0.8


async def test_a_peer_that_does_not_read_its_replies_is_closed_after_the_write_timeout(autojump_clock: Any) -> None:
    big = "x" * 500_000

    async def large(payload: Any) -> Any:
        return Ok(big)

    async with serving(large) as served:
        stream = await trio.open_tcp_stream(LOOPBACK, served.port)
        async with stream:
            await stream.send_all(b"".join(frame_bytes(CALL, i, Heartbeat("u")) for i in range(1, 200)))
            started = trio.current_time()
            (link,) = served.server.links
            await link.closed.wait()  # never read: the replies fill both sockets' buffers
            assert link.closed_because == f"the peer has not read for {WRITE_TIMEOUT:g} s"
            assert trio.current_time() - started >= WRITE_TIMEOUT


async def test_a_forwarded_call_that_waited_for_a_slot_is_sent_with_what_is_left_of_its_time(
    autojump_clock: Any,
) -> None:
    held = Held()
    received: list[float] = []

    async def handler(payload: Any) -> Any:
        if isinstance(payload, ForwardedCall):
            received.append(payload.time_left)
            return Ok("applied")
        return await held(payload)

    async with (
        serving(handler) as served,
        LinkClient.connect(LOOPBACK, served.port) as client,
        trio.open_nursery() as nursery,
    ):
        for user in range(MAX_CALLS_IN_FLIGHT):
            nursery.start_soon(partial(client.call, Heartbeat(f"u{user}"), deadline=trio.current_time() + 60))
        await held.capped.wait()
        nursery.start_soon(_release_after, held.release, 1.5)
        forwarded = ForwardedCall("multi_room", "r", Heartbeat("late"), 2.0)
        assert await client.call(forwarded, deadline=trio.current_time() + 2.0) == Ok("applied")
    assert received == [pytest.approx(0.5, abs=0.05)]


async def _release_after(event: trio.Event, seconds: float) -> None:
    await trio.sleep(seconds)
    event.set()


async def test_closes_before_greeting_are_one_line_a_second_and_the_rest_are_counted_after(
    autojump_clock: Any, logs: list[dict[str, Any]]
) -> None:
    line = RefusalLine()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.report_the_rest)
        for index in range(10):
            line.closed(f"10.0.0.{index}:1", "no greeting within 5 s")
        await trio.sleep(0.5)
        line.closed("10.0.0.99:1", "no greeting within 5 s")
        await trio.sleep(5)  # the flood is over
        nursery.cancel_scope.cancel()
    messages = [r["message"] for r in logs if "greet" in r["message"]]
    assert messages == [
        "cluster link closed before it greeted peer=10.0.0.0:1: no greeting within 5 s",
        "cluster link: 10 more closed before they greeted since the last line",
    ]
