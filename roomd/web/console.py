"""The operator's console at /console: a page that shows the rooms live and can act on them.

It exists only with `auth.admin_key` set. A small form asks for the key once
and sets a cookie (HttpOnly, SameSite=Strict, 12 hours) holding a token
derived from it, never the key; the page then reads `/admin/v1/events`
(Server-Sent Events) and calls the admin API with that cookie, adding the
header `X-Roomd-Console` to what changes something (a form on another site
can neither send the cookie nor set that header). The page is plain
HTML/CSS/JS served from the package (no build step); its Content-Security-
Policy allows only its own script and style, and it writes everything a
client sent (names, roomInfo) as text, never as HTML.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from importlib import resources
from urllib.parse import parse_qs

import trio

from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, RequestError
from roomd.web.pipeline import Call

COOKIE = "roomd_console"
COOKIE_LIFETIME = 12 * 3600
CONSOLE_HEADER = b"x-roomd-console"
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HTML = "text/html; charset=utf-8"
STATIC = {"app.js": "application/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roomd console</title>
<link rel="stylesheet" href="/console/app.css"></head>
<body><main class="login"><h1>roomd console</h1>
<form method="post" action="/console/login">
<label>Admin key <input type="password" name="key" autocomplete="current-password" autofocus></label>
<button type="submit">Sign in</button>
<p class="error">{error}</p>
</form></main></body></html>
"""


def console_token(key: str, expires: int) -> str:
    mac = hmac.new(key.encode(), f"console:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def cookie_valid(ctx: AppContext, call: Call) -> bool:
    """Whether the request carries a console cookie for the current admin key, not expired."""
    key = ctx.settings.auth.admin_key
    token = _cookie(call.request.header(b"cookie"), COOKIE)
    if not key or token is None:
        return False
    expires_text, _, _ = token.partition(".")
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    return expires >= time.time() and hmac.compare_digest(token.encode(), console_token(key, expires).encode())


def from_console(call: Call) -> bool:
    return call.request.header(CONSOLE_HEADER) != ""


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def require_admin_key(ctx: AppContext, call: Call) -> str:
    """The admin key; without one the console and the admin API do not exist (404)."""
    key = ctx.settings.auth.admin_key
    if not key:
        raise RequestError(Code.BAD_PARAMETER, f"no route for {call.request.method} {call.request.path}", status=404)
    return key


def _page(html: str, status: int = 200, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Reply:
    security = (
        (b"content-security-policy", CSP),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
    )
    return Reply(Code.OK, payload=html.encode(), content_type=HTML, http_status=status, headers=security + headers)


async def page(ctx: AppContext, call: Call) -> Reply:
    require_admin_key(ctx, call)
    if not cookie_valid(ctx, call):
        return _page(LOGIN_PAGE.format(error=""))
    return _page(resources.files("roomd.web").joinpath("static/console.html").read_text(encoding="utf-8"))


async def login(ctx: AppContext, call: Call) -> Reply:
    key = require_admin_key(ctx, call)
    if call.request.method != "POST":  # a bookmark of the form's target: the form is on /console
        return _page("", status=303, headers=((b"location", b"/console"),))
    too_fast = ctx.login_limit.refusal(call.request.client, trio.current_time())  # every attempt: a guess
    if too_fast is not None:
        return _page(LOGIN_PAGE.format(error=html.escape(too_fast)), status=429)
    given = parse_qs(call.body.decode("utf-8", "replace")).get("key", [""])[0]
    if not hmac.compare_digest(given.encode(), key.encode()):
        return _page(LOGIN_PAGE.format(error="That is not the admin key."), status=401)
    expires = int(time.time()) + COOKIE_LIFETIME
    cookie = f"{COOKIE}={console_token(key, expires)}; Max-Age={COOKIE_LIFETIME}; Path=/; HttpOnly; SameSite=Strict"
    return _page("", status=303, headers=((b"location", b"/console"), (b"set-cookie", cookie.encode())))


async def logout(ctx: AppContext, call: Call) -> Reply:
    require_admin_key(ctx, call)
    cookie = f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
    return _page("", status=303, headers=((b"location", b"/console"), (b"set-cookie", cookie.encode())))


async def static(ctx: AppContext, call: Call) -> Reply:
    require_admin_key(ctx, call)
    name = call.request.path.rsplit("/", 1)[1]
    content_type = STATIC.get(name)
    if content_type is None:
        raise RequestError(Code.BAD_PARAMETER, f"no route for {call.request.method} {call.request.path}", status=404)
    data = resources.files("roomd.web").joinpath(f"static/{name}").read_bytes()
    return Reply(Code.OK, payload=data, content_type=content_type, headers=((b"x-content-type-options", b"nosniff"),))
