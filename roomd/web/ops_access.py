"""Who may use the operations routes: log files, check_config, /metrics and /debug/actors.

They show what clients sent, the server's settings and its load, so they
are closed by default: with `auth.admin_key` set they need
`Authorization: Bearer <admin_key>`; without it they answer only clients
whose address is in `[ops] allow` (loopback by default).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

import trio

from roomd.web.context import AppContext
from roomd.web.envelope import Code, RequestError
from roomd.web.pipeline import Call

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(allow: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in allow)


def address_allowed(address: str, allow: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(allow))


def require_ops_caller(ctx: AppContext, call: Call) -> None:
    """Return when the caller of this request may use an ops route; a RequestError otherwise."""
    client = call.request.client
    require_ops_access(
        ctx, authorization=call.request.header(b"authorization"), client=None if client == "-" else client
    )


def bearer_matches(key: str, authorization: str) -> bool:
    """Whether an Authorization header value (as `Request.header` gives it, its bytes read as
    Latin-1) is `Bearer <key>`, the scheme in any case and the key as UTF-8 (compared in constant time)."""
    scheme, _, given = authorization.partition(" ")
    given_bytes = given.encode("latin-1", "replace")
    return hmac.compare_digest(given_bytes, key.encode()) and scheme.lower() == "bearer"


def require_bearer_key(ctx: AppContext, *, key: str, authorization: str, client: str, detail: str) -> None:
    """Return when `authorization` carries the admin key. A wrong key is a guess: it is charged to
    the client's login allowance ([limits] login_*), and once that is spent every attempt is code 12
    (HTTP 429) until it refills, right key or not; otherwise a wrong key is code 7 (HTTP 401)."""
    too_fast = ctx.login_limit.waiting(client, trio.current_time())
    if too_fast is not None:
        raise RequestError(Code.BUSY, too_fast, status=429)
    if not bearer_matches(key, authorization):
        ctx.login_limit.refusal(client, trio.current_time())
        raise RequestError(Code.AUTH_FAILED, detail, status=401)


def require_ops_access(ctx: AppContext, *, authorization: str, client: str | None) -> None:
    """Return when the caller may use an ops route; a RequestError (code 7) otherwise."""
    key = ctx.settings.auth.admin_key
    if key:
        detail = "this route needs the header Authorization: Bearer <admin_key>"
        require_bearer_key(ctx, key=key, authorization=authorization, client=client or "-", detail=detail)
        return
    if client is None or not address_allowed(client, ctx.settings.ops.allow):
        raise RequestError(
            Code.AUTH_FAILED,
            f"this route answers only the addresses in ops.allow (or set auth.admin_key); not {client or 'unknown'}",
            status=403,
        )
