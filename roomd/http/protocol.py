"""HTTP/1.1 as hypercorn's h11 protocol speaks it, with four changes roomd needs.

- A reply under way is finished before what the client sent after its
  request is judged. Once roomd answers with `Connection: close` (a refused
  head, a late body), h11 treats any further byte from the client as an
  error, and hypercorn then closes the socket at once — under the reply
  still being written, which the client then never gets. Here h11 pauses
  instead until the reply is out; the connection closes after it.
- A reply sent before the request's body has all arrived (a body over
  max_body_bytes, a route that does not read it) says `Connection: close`.
  hypercorn closes such a connection after the reply in any case; without
  the header a client keeps it in its pool and sends its next request into
  a socket that is closing, and that request fails.
- Requests h11 cannot parse (a bad request line or header, a head still
  incomplete past max_header_bytes) get the smallest reply there is: a
  status line, `content-length: 0` and `connection: close`.
- `HTTP11Only` never switches to HTTP/2 (`server.h2c` off): an
  `Upgrade: h2c` header is ignored, the request answered in HTTP/1.1, and
  the HTTP/2 preface `PRI * HTTP/2.0` reaches the app as an HTTP/2.0
  request, which request_checks refuses (505, `Connection: close`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import h11
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response
from hypercorn.protocol.h11 import H11Protocol

_BARE_ERROR_HEADERS = [(b"content-length", b"0"), (b"connection", b"close")]
_REPLYING = frozenset({h11.SEND_RESPONSE, h11.SEND_BODY})
_CLOSE = (b"connection", b"close")


class _RepliesFirst(h11.Connection):
    def next_event(self) -> Any:
        if self.their_state is h11.MUST_CLOSE and self.our_state in _REPLYING:
            return h11.PAUSED  # hypercorn reads on once the reply is done, then closes
        return super().next_event()


class RoomdH11(H11Protocol):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.connection = _RepliesFirst(h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size)

    async def stream_send(self, event: StreamEvent) -> None:
        if (
            isinstance(event, Response)
            and event.status_code >= 200
            and self.connection.their_state is h11.SEND_BODY
            and _CLOSE not in event.headers
        ):
            event = dataclasses.replace(event, headers=[*event.headers, _CLOSE])
        await super().stream_send(event)

    async def _send_error_response(self, status_code: int) -> None:
        await self._send_h11_event(h11.Response(status_code=status_code, headers=_BARE_ERROR_HEADERS))
        await self._send_h11_event(h11.EndOfMessage())


class HTTP11Only(RoomdH11):
    async def _check_protocol(self, event: h11.Request) -> None:
        return None
