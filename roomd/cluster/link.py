"""A TCP link between two roomd nodes, carrying router values: the transport of a future ClusterRouter.

A cluster router forwards to the node that owns a room the same messages
`LocalRouter` hands to a directory, and brings back the same replies, so
what travels is exactly what `roomd.actors.codec` writes. One connection
carries many calls at once: each frame is a 4-byte big-endian length and a
codec-encoded `(kind, request_id, payload)`, where kind is `CALL` or
`REPLY`, and replies find their caller by request id, in any order. Frames
queued in the same scheduler tick leave in one `send_all`.

The bytes come from another process and are not trusted: a length over
`MAX_FRAME` closes the link before anything that size is allocated, and a
frame the codec refuses closes that link (never the server). Failure is a
value, as everywhere behind the router: a call whose deadline passes, or
whose link is full or down, is answered `Refused(BUSY)`, and a breaking link
answers every call still waiting on it, so none is left hanging. The
deadline bounds the wait here only; a router that wants the serving node to
stop by it too sends the time left (trio clocks differ between processes)
in the payload.

Neither side lets one link pile up work: a client keeps at most
`MAX_CALLS_IN_FLIGHT` calls unanswered (further calls wait for a slot, until
their deadline; a forwarded call's time left is reduced by that wait, so the
serving node never acts after its caller gave up), and a server that has
that many calls of a link in hand reads no more of it until one is answered.
"""

from __future__ import annotations

import dataclasses
import hmac
import itertools
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import trio
from loguru import logger

from roomd.actors.codec import CodecError, decode, encode
from roomd.actors.messages import ForwardedCall, ForwardedCreate
from roomd.actors.replies import DomainError, Refused

CALL, REPLY = 1, 2
MAX_FRAME = 1 << 20  # the longest frame read or written: far above any router value
MAX_QUEUE = 10_000  # frames waiting to be written on one link
MAX_GREETING = 256  # the longest first frame of a link to a server that asks for a secret
GREETING_TIMEOUT = 5.0  # seconds a new link has to greet
MAX_LINKS = 1024  # greeted links a server holds at once; more are closed as they come
# links not yet greeted, at most: a newer one displaces the oldest, so that connections that never
# greet (anybody who can reach the port) cannot keep the cluster's own links out
MAX_GREETING_LINKS = 64
# calls one link may have the server working on: a client sends no more until one is answered, and a
# server reads no more from a peer that does (a well-behaved client is never paused)
MAX_CALLS_IN_FLIGHT = 1024
WRITE_TIMEOUT = 10.0  # seconds a peer may leave WRITE_STEP bytes unread; then it is closed
WRITE_STEP = 64 * 1024
LOG_REFUSALS_EVERY = 1.0  # seconds between lines about links closed before they greeted
RECEIVE_SIZE = 64 * 1024
_LENGTH = struct.Struct(">I")

_TIMED = (ForwardedCall, ForwardedCreate)  # calls that carry the seconds their caller still waits
Handler = Callable[[Any], Awaitable[Any]]
"""What a node does with a call: the payload in, the reply payload out."""


class _Link:
    """One connection, either side: a writer task batching the queued frames, a reader of frames."""

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        on_close: Callable[[str], bool],
        max_frame: int,
        max_queue: int,
    ) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self.writes = 0  # send_all calls, for tests and metrics: fewer than frames when batching works
        self.closed_because: str | None = None
        self.closed = trio.Event()
        self._on_close = on_close
        self._send, self._receive = trio.open_memory_channel[bytes](max_queue)
        self._buffer = bytearray()
        self._scope = trio.CancelScope()
        try:
            host, port, *_ = stream.socket.getpeername()
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "?"

    def offer(self, frame: bytes) -> bool:
        """Queue a frame (length prefix included) without waiting: False when full or closed."""
        try:
            self._send.send_nowait(frame)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def put(self, frame: bytes) -> None:
        """Queue a frame, waiting for room; dropped if the link closes meanwhile."""
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send.send(frame)

    def close(self, reason: str, *, warning: bool = False) -> None:
        """Stop reading and writing (the first reason is the one kept and logged, unless the
        owner's `on_close` logs it: it returns True then)."""
        if self.closed_because is not None:
            return
        self.closed_because = reason
        self.closed.set()
        self._receive.close()
        self._scope.cancel()
        if not self._on_close(reason):
            (logger.warning if warning else logger.info)("cluster link closed peer={}: {}", self.peer, reason)

    async def run(
        self,
        on_frame: Callable[[trio.Nursery, int, int, Any], str | None],
        before_frame: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Read frames into `on_frame` (a reason to close, or None) until the link closes, then close
        the stream; `before_frame` is awaited before each frame is read."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write)
                    reason, warning = await self._read(nursery, on_frame, before_frame)
                    self.close(reason, warning=warning)
        finally:
            self.close("the link's owner stopped")
            await trio.aclose_forcefully(self.stream)

    async def _write(self) -> None:
        try:
            async for first in self._receive:
                batch = [first]
                while True:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                        break
                self.writes += 1
                data = memoryview(b"".join(batch))
                for start in range(0, len(data), WRITE_STEP):  # a deadline per step: progress, not speed
                    with trio.fail_after(WRITE_TIMEOUT):
                        await self.stream.send_all(data[start : start + WRITE_STEP])
        except trio.TooSlowError:
            self.close(f"the peer has not read for {WRITE_TIMEOUT:g} s", warning=True)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            self.close(f"write failed: {error!r}", warning=True)

    async def _read(
        self,
        nursery: trio.Nursery,
        on_frame: Callable[[trio.Nursery, int, int, Any], str | None],
        before_frame: Callable[[], Awaitable[None]] | None,
    ) -> tuple[str, bool]:
        """Frames until the link ends: the reason, and whether it is worth a warning."""
        try:
            while True:
                if before_frame is not None:
                    await before_frame()
                header = await self._read_exactly(_LENGTH.size)
                if header is None:
                    return "the peer closed the connection", False
                (length,) = _LENGTH.unpack(header)
                if length > self.max_frame:
                    return f"frame of {length} bytes is over the limit of {self.max_frame}", True
                body = await self._read_exactly(length)
                if body is None:
                    return "the peer closed the connection within a frame", True
                try:
                    frame = decode(body)
                except CodecError as error:
                    return f"malformed frame: {error}", True
                if (
                    not isinstance(frame, tuple)
                    or len(frame) != 3
                    or type(frame[0]) is not int
                    or type(frame[1]) is not int
                ):
                    return "malformed frame: not a (kind, request_id, payload) tuple", True
                refusal = on_frame(nursery, frame[0], frame[1], frame[2])
                if refusal is not None:
                    return f"malformed frame: {refusal}", True
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            return f"read failed: {error!r}", True

    async def _read_exactly(self, size: int) -> bytes | None:
        """`size` bytes, or None at the end of the stream; never holds more than size + RECEIVE_SIZE."""
        while len(self._buffer) < size:
            chunk = await self.stream.receive_some(RECEIVE_SIZE)
            if not chunk:
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def frame_bytes(kind: int, request_id: int, payload: object) -> bytes:
    """The bytes of one frame, its length prefix included (payload: a router value)."""
    body = encode((kind, request_id, payload))
    return _LENGTH.pack(len(body)) + body


def _busy(reason: str) -> Refused:
    return Refused(DomainError.BUSY, f"cluster link: {reason}")


class LinkServer:
    """Accepts links from other nodes and answers each call with `handler`, every call in its own task.

    With a `secret`, a link's first frame must be `(CALL, 0, secret)` (hex text): anything else
    closes it before any call is read, so a client that reached the port but does not know the
    cluster's secret can ask nothing. An empty secret is a ValueError: anyone can give that one."""

    def __init__(self, *, secret: str | None = None, max_frame: int = MAX_FRAME, max_queue: int = MAX_QUEUE) -> None:
        if secret is not None and not secret:
            raise ValueError("the link secret is empty: any client greeting with '' would get onto the link")
        self.secret = secret
        self.max_frame = max_frame
        self.max_queue = max_queue
        self.links: set[_Link] = set()
        self.greeting: dict[_Link, None] = {}  # links not yet greeted, oldest first
        self.refused_links = 0
        self._refusals = RefusalLine()

    async def serve(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; `task_status.started` gets the listeners (port 0: ask them for theirs)."""

        async def serve_link(stream: trio.SocketStream) -> None:
            await self._serve_link(handler, stream)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._refusals.report_the_rest)
            listeners = await nursery.start(partial(trio.serve_tcp, serve_link, port, host=host))
            task_status.started(listeners)

    async def _serve_link(self, handler: Handler, stream: trio.SocketStream) -> None:
        greeted = self.secret is None
        if greeted and len(self.links) >= MAX_LINKS:
            self.refused_links += 1
            await trio.aclose_forcefully(stream)
            return

        def on_close(reason: str) -> bool:
            if greeted:
                return False  # logged as any link's close
            self.refused_links += 1
            self._refusals.closed(link.peer, reason)
            return True

        link = _Link(
            stream,
            on_close=on_close,
            max_frame=self.max_frame if greeted else MAX_GREETING,  # no more until it is known
            max_queue=self.max_queue,
        )
        calls = trio.Semaphore(MAX_CALLS_IN_FLIGHT)

        def on_frame(nursery: trio.Nursery, kind: int, request_id: int, payload: Any) -> str | None:
            nonlocal greeted
            if not greeted:
                calls.release()  # the greeting is no call
                if (
                    kind != CALL
                    or request_id != 0
                    or not isinstance(payload, str)
                    or not self.secret
                    or not hmac.compare_digest(payload.encode(), self.secret.encode())
                ):
                    return "the peer did not give the cluster's link secret"
                if len(self.links) >= MAX_LINKS:
                    return f"the server holds {MAX_LINKS} links already"
                greeted = True
                self.greeting.pop(link, None)
                self.links.add(link)
                link.max_frame = self.max_frame
                logger.info("cluster link accepted peer={}", link.peer)
                return None
            if kind != CALL:
                return f"kind {kind} sent to a server"
            nursery.start_soon(self._answer, link, handler, request_id, payload, calls)
            return None

        async def close_unless_greeted() -> None:
            await trio.sleep(GREETING_TIMEOUT)
            if not greeted:
                link.close(f"no greeting within {GREETING_TIMEOUT:g} s")

        if greeted:
            self.links.add(link)
            logger.info("cluster link accepted peer={}", link.peer)
        else:
            if len(self.greeting) >= MAX_GREETING_LINKS:
                oldest = next(iter(self.greeting))
                oldest.close(f"displaced before it greeted ({MAX_GREETING_LINKS} links were waiting to greet)")
                self.greeting.pop(oldest, None)
            self.greeting[link] = None
        try:
            async with trio.open_nursery() as nursery:
                if not greeted:
                    nursery.start_soon(close_unless_greeted)
                await link.run(on_frame, calls.acquire)
                nursery.cancel_scope.cancel()
        finally:
            self.links.discard(link)
            self.greeting.pop(link, None)

    async def _answer(
        self, link: _Link, handler: Handler, request_id: int, payload: Any, calls: trio.Semaphore
    ) -> None:
        try:
            try:
                reply = await handler(payload)
                frame = frame_bytes(REPLY, request_id, reply)
            except Exception as error:
                logger.exception("cluster call failed peer={} request={}", link.peer, request_id)
                frame = frame_bytes(REPLY, request_id, Refused(DomainError.INTERNAL, f"the call failed: {error!r}"))
            if len(frame) - _LENGTH.size > link.max_frame:
                logger.error("cluster reply too large peer={} request={} bytes={}", link.peer, request_id, len(frame))
                frame = frame_bytes(REPLY, request_id, Refused(DomainError.INTERNAL, "the reply is too large"))
            await link.put(frame)
        finally:
            calls.release()


class RefusalLine:
    """Links closed before they greeted, logged at most once every LOG_REFUSALS_EVERY seconds: whoever
    can reach the port can open them as fast as it likes."""

    def __init__(self) -> None:
        self._last = -LOG_REFUSALS_EVERY
        self._unlogged = 0

    def closed(self, peer: str, reason: str) -> None:
        now = trio.current_time()
        if now - self._last < LOG_REFUSALS_EVERY:
            self._unlogged += 1
            return
        also = f" ({self._unlogged} more since the last line)" if self._unlogged else ""
        logger.warning("cluster link closed before it greeted peer={}: {}{}", peer, reason, also)
        self._last = now
        self._unlogged = 0

    async def report_the_rest(self) -> None:
        """Run until cancelled: say how many closes the last line left out once a flood has ended."""
        while True:
            await trio.sleep(LOG_REFUSALS_EVERY)
            if self._unlogged and trio.current_time() - self._last >= LOG_REFUSALS_EVERY:
                logger.warning("cluster link: {} more closed before they greeted since the last line", self._unlogged)
                self._last = trio.current_time()
                self._unlogged = 0


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: Any = None


class LinkClient:
    """One link to another node: `call` from any number of tasks at once."""

    def __init__(self, stream: trio.SocketStream, *, max_frame: int, max_queue: int) -> None:
        self._link = _Link(stream, on_close=self._fail_pending, max_frame=max_frame, max_queue=max_queue)
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        # calls sent and not yet answered, whether or not their callers still wait: never more than the
        # serving side works on at once, so it never has to stop reading this link
        self._slots = trio.Semaphore(MAX_CALLS_IN_FLIGHT)
        self._unanswered: set[int] = set()

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        secret: str | None = None,
        max_frame: int = MAX_FRAME,
        max_queue: int = MAX_QUEUE,
    ) -> AsyncIterator[LinkClient]:
        """A link open for the block (greeting the server with `secret`, if given): calls still
        waiting when it ends are answered BUSY."""
        stream = await trio.open_tcp_stream(host, port)
        client = cls(stream, max_frame=max_frame, max_queue=max_queue)
        if secret is not None:
            client._link.offer(frame_bytes(CALL, 0, secret))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._link.run, client._on_frame)
            try:
                yield client
            finally:
                client._link.close("closed by its owner")

    @property
    def writes(self) -> int:
        """How many `send_all` calls the link made."""
        return self._link.writes

    @property
    def closed_because(self) -> str | None:
        return self._link.closed_because

    async def wait_closed(self) -> None:
        await self._link.closed.wait()

    def close(self, reason: str) -> None:
        """Close the link now; calls still waiting on it are answered BUSY."""
        self._link.close(reason)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def call(self, payload: object, *, deadline: float) -> Any:
        """The peer's reply to `payload` (router values both), or Refused(BUSY) by `deadline` (trio time)."""
        if self._link.closed_because is not None:
            return _busy(f"down ({self._link.closed_because})")
        request_id = next(self._ids)
        frame = frame_bytes(CALL, request_id, payload)
        if len(frame) - _LENGTH.size > self._link.max_frame:
            return Refused(DomainError.INVALID, f"a call of {len(frame)} bytes is over the link's limit")
        pending = _Pending()
        self._pending[request_id] = pending
        try:
            try:
                self._slots.acquire_nowait()  # no checkpoint: calls made in one tick queue in that tick
                self._unanswered.add(request_id)
            except trio.WouldBlock:
                waited_from = trio.current_time()
                with trio.move_on_at(deadline):
                    await self._slots.acquire()
                    self._unanswered.add(request_id)
                if request_id in self._unanswered and isinstance(payload, _TIMED):  # its time left is less now
                    waited = trio.current_time() - waited_from
                    frame = frame_bytes(
                        CALL, request_id, dataclasses.replace(payload, time_left=max(0.0, payload.time_left - waited))
                    )
            if request_id not in self._unanswered:
                return _busy(f"{MAX_CALLS_IN_FLIGHT} calls on the link were unanswered until the deadline")
            if not self._link.offer(frame):  # full, or closed while it waited for a slot
                self._answered(request_id)
                if self._link.closed_because is not None:
                    return _busy(f"down ({self._link.closed_because})")
                return _busy("the outgoing queue is full")
            with trio.move_on_at(deadline):
                await pending.event.wait()
            if not pending.event.is_set():
                return _busy("no reply by the deadline")
            return pending.reply
        finally:
            self._pending.pop(request_id, None)

    def _answered(self, request_id: int) -> None:
        if request_id in self._unanswered:
            self._unanswered.discard(request_id)
            self._slots.release()

    def _on_frame(self, _nursery: trio.Nursery, kind: int, request_id: int, payload: Any) -> str | None:
        if kind != REPLY:
            return f"kind {kind} sent to a client"
        self._answered(request_id)
        pending = self._pending.pop(request_id, None)
        if pending is not None:  # else its caller stopped waiting
            pending.reply = payload
            pending.event.set()
        return None

    def _fail_pending(self, reason: str) -> bool:
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            waiting.reply = _busy(f"down ({reason})")
            waiting.event.set()
        return False  # the close is logged as any link's
