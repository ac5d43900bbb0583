"""The one way every request is answered: request in, `Reply` out.

`respond` finds the route (404 for any method on an unknown path; a target
in absolute form, `http://host/path`, by its path), checks the method (405,
with `Allow`), refuses while draining (503, except the probes), reads
the body under its size limit and deadline (413, 408; a client that hangs
up mid-body gets nothing applied), runs the route's handler with the
caller's deadline, turns a refused input into its code and a bug into
code -1 with its stack in the error log, and writes the request's line in
the response log and its count in the metrics. The ASGI adapter (asgi.py)
only translates between ASGI and `Request`/`Reply`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import trio
from loguru import logger

from roomd.web.body_deadline import BodyTimedOut, timeout_reply
from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, RequestError, draining_reply, error_reply, reply
from roomd.web.request_log import request_line
from roomd.web.validation import parse_form

CLIENT_GONE_STATUS = 499  # logged only: the client closed the connection before its request was whole
log = logger.bind(actor="http")


class BodyTooLarge(Exception):
    """The body is longer than the limit."""


class ClientGone(Exception):
    """The client hung up before its whole body arrived."""


class BodySource(Protocol):
    async def read(self, limit: int) -> bytes:
        """The whole body; BodyTooLarge past `limit` bytes, BodyTimedOut when late, ClientGone."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query_string: str
    headers: Sequence[tuple[bytes, bytes]]
    client: str  # the peer's address, "-" when unknown
    body: BodySource
    refusal: Reply | None = None  # the head was refused before routing (request_checks)

    def header(self, name: bytes) -> str:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return ""

    @property
    def target(self) -> str:
        """The path and query as the client sent them, for the response log."""
        return self.path + (f"?{self.query_string}" if self.query_string else "")


@dataclass(frozen=True)
class Call:
    """What a handler gets: the request, its body, and the caller's deadline (trio time)."""

    request: Request
    body: bytes
    deadline: float
    kind: str = ""  # room routes: the kind in the path
    endpoint: str = ""

    @cached_property
    def query(self) -> dict[str, str]:
        """The query's parameters; a RequestError (code 1) when it cannot be read."""
        query_string = self.request.query_string
        return parse_form(query_string, "the query") if query_string else {}

    @property
    def mimetype(self) -> str:
        return self.request.header(b"content-type").split(";", 1)[0].strip().lower()


Handler = Callable[[AppContext, Call], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the route's label in metrics and the response log
    methods: frozenset[str]
    handler: Handler
    always_served: bool = False  # answered while draining (probes and metrics)
    log_body: bool = True  # False: the response log shows "<not logged>" (the body holds a secret)
    kind: str = ""
    endpoint: str = ""


@dataclass
class Routes:
    by_path: dict[str, Route] = field(default_factory=dict)
    by_prefix: dict[str, Route] = field(default_factory=dict)  # a route for every path under a prefix

    def add(self, path: str, route: Route) -> None:
        self.by_path[path] = route

    def add_prefix(self, prefix: str, route: Route) -> None:
        """`route` answers every path that starts with `prefix` (its handler reads the rest)."""
        self.by_prefix[prefix] = route

    def find(self, path: str) -> Route | None:
        route = self.by_path.get(path)
        if route is not None:
            return route
        for prefix, under in self.by_prefix.items():
            if path.startswith(prefix):
                return under
        return self.absolute_form(path)

    def absolute_form(self, target: str) -> Route | None:
        """The route of a request target in absolute form (`http://host/healthz`), which hypercorn
        passes on whole as the path; None for any other target."""
        scheme, separator, rest = target.partition("://")
        if not separator or scheme.lower() not in ("http", "https"):
            return None
        path = "/" + rest.partition("/")[2]
        return self.by_path.get(path) or next((r for p, r in self.by_prefix.items() if path.startswith(p)), None)


async def respond(ctx: AppContext, routes: Routes, request: Request) -> Reply:
    started = time.perf_counter()
    route = routes.find(request.path)
    logged_body = ""
    try:
        answer, logged_body = await _answer(ctx, route, request)
    except RequestError as error:
        answer = error_reply(error)
    except Exception:
        log.exception("unexpected error on {} {}", request.method, request.path)
        answer = reply(Code.INTERNAL, detail="unexpected server error; it has been logged")
    seconds = time.perf_counter() - started
    ctx.metrics.observe(route.name if route is not None else "unmatched", int(answer.code), seconds)
    ctx.response_log.add(  # control characters are escaped there
        request_line(
            method=request.method,
            target=request.target,
            client=request.client,
            body=logged_body,
            status=answer.http_status,
            code=int(answer.code),
            seconds=seconds,
        )
    )
    return answer


async def _answer(ctx: AppContext, route: Route | None, request: Request) -> tuple[Reply, str]:
    """The reply and the body as the response log shows it."""
    if request.refusal is not None:
        return request.refusal, ""
    if route is None:
        detail = f"no route for {request.method} {request.path}"
        return _unread(request, reply(Code.BAD_PARAMETER, detail=detail, http_status=404)), ""
    if request.method not in route.methods:
        detail = f"{request.path} does not accept {request.method}"
        allow = ((b"allow", ", ".join(sorted(route.methods)).encode()),)
        return _unread(request, Reply(Code.BAD_PARAMETER, detail=detail, http_status=405, headers=allow)), ""
    if ctx.draining and not route.always_served:
        return draining_reply(), ""
    limit = ctx.settings.server.max_body_bytes
    try:
        body = await request.body.read(limit)
    except BodyTooLarge:
        detail = f"request body is larger than {limit} bytes"
        return reply(Code.BAD_PARAMETER, detail=detail, http_status=413), "<over the limit>"
    except BodyTimedOut as late:
        return timeout_reply(late), "<too slow>"
    except ClientGone:
        detail = "the client closed the connection before sending the whole body; nothing was applied"
        return reply(Code.BAD_PARAMETER, detail=detail, http_status=CLIENT_GONE_STATUS), "<client gone>"
    logged_body = body.decode("utf-8", errors="replace") if route.log_body else "<not logged>"
    call = Call(
        request,
        body,
        trio.current_time() + ctx.settings.server.call_timeout,
        kind=route.kind,
        endpoint=route.endpoint,
    )
    try:
        return await route.handler(ctx, call), logged_body
    except RequestError as error:
        return error_reply(error), logged_body


def _unread(request: Request, answer: Reply) -> Reply:
    """`answer`, closing the connection when the request has a body that is not read: the
    next request could only start after it, however slowly it comes."""
    announced = request.header(b"content-length") not in ("", "0") or request.header(b"transfer-encoding") != ""
    return dataclasses.replace(answer, close_connection=True) if announced else answer
