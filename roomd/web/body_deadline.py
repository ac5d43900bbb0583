"""One deadline over the whole request body, not one per read.

hypercorn's read_timeout bounds each read of the socket, so a body trickled
in a byte every few seconds could keep a request open for as long as its
Content-Length allows. `BodyDeadline` gives the body `server.read_timeout`
seconds in all, counted from the moment the app gets the request head;
a read of the body after that raises `BodyTimedOut`, which the edge answers
with 408 and `Connection: close`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from roomd.web.envelope import Code, Reply

Receive = Callable[[], Awaitable[dict[str, Any]]]


class BodyTimedOut(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} seconds")
        self.seconds = seconds


class BodyDeadline:
    """`receive` for an app: the same messages, until the body is late."""

    __slots__ = ("_body_done", "_deadline", "_receive", "_seconds")

    def __init__(self, receive: Receive, seconds: float) -> None:
        self._receive = receive
        self._seconds = seconds
        self._deadline = trio.current_time() + seconds
        self._body_done = False

    async def receive(self) -> dict[str, Any]:
        if self._body_done:  # what follows the body (a disconnect) has no deadline
            return await self._receive()
        with trio.move_on_at(self._deadline):
            message = await self._receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                self._body_done = True
            return message
        raise BodyTimedOut(self._seconds)


def timeout_reply(error: BodyTimedOut) -> Reply:
    return Reply(Code.BAD_PARAMETER, {}, str(error), None, 408, close_connection=True)
