"""One line per request in the response log (method, path, client, body, status, code,
latency), and the same request counted in the metrics.

The lines go through `ResponseLog` (response_log.py), which batches them.
"""

from __future__ import annotations

import re
import time

from quart import Response, g, request

from roomd.web.context import AppContext, current_context

MAX_LOGGED_BODY_CHARS = 2048
# Credentials never reach the log files: the values of query and form parameters, and of
# JSON fields, whose names contain token, usersig or secret (txSecret, userSig, secret_key).
_SECRET_NAME = r"(?=[A-Za-z0-9_]*?(?:token|usersig|secret))[A-Za-z0-9_]++"  # possessive: no backtracking
# `=` may be percent-encoded, once or twice (a push URL inside a form-encoded body); a value
# ends at `&`, whitespace, a quote, a backslash (JSON escapes), `#` or an encoded `&`
_SECRET_QUERY = re.compile(rf"(?i)\b({_SECRET_NAME})(=|%3D|%253D)(?:[^&\s\"'\\#%]|%(?!26|2526)[0-9A-Fa-f]{{2}})*+")
_SECRET_JSON = re.compile(rf'(?i)"({_SECRET_NAME})"\s*:\s*"(?:[^"\\]|\\.)*+"')


# every name the patterns match holds one of these, in the case folding of `re.IGNORECASE`
# (which also takes the Kelvin sign for k, the long s for s and the dotless i for i)
_SECRET_WORDS = ("token", "usersig", "secret")


def redact(text: str) -> str:
    folded = text.casefold().replace("\u0131", "i")
    if not any(word in folded for word in _SECRET_WORDS):  # most requests: nothing to scan for
        return text
    if "=" in text or "%" in text:
        text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)
    if '"' in text:
        text = _SECRET_JSON.sub(lambda m: f'"{m.group(1)}":"<redacted>"', text)
    return text


def record_request(
    ctx: AppContext,
    *,
    route: str,
    method: str,
    target: str,
    client: str,
    body: str,
    status: int,
    code: object,
    seconds: float,
) -> None:
    ctx.metrics.observe(route, code, seconds)
    body = redact(body)  # before the cut, which could leave a secret without its closing quote
    if len(body) > MAX_LOGGED_BODY_CHARS:
        body = body[:MAX_LOGGED_BODY_CHARS] + f"...<{len(body)} chars>"
    ctx.response_log.add(  # control characters are escaped there
        f"{method} {redact(target)} ip={client} body={body} status={status} code={code} latency_ms={seconds * 1000:.1f}"
    )


# --- for the routes Quart serves ------------------------------------------------------


async def start_timer() -> None:
    g.started_at = time.perf_counter()


async def log_response(response: Response) -> Response:
    started = getattr(g, "started_at", None)
    ctx = current_context()
    record_request(
        ctx,
        route=request.url_rule.rule if request.url_rule is not None else "unmatched",
        method=request.method,
        target=request.full_path.rstrip("?"),
        client=request.remote_addr or "-",
        body=await _body_for_log(),
        status=response.status_code,
        code=getattr(g, "reply_code", "-"),
        seconds=time.perf_counter() - started if started is not None else 0.0,
    )
    return response


async def _body_for_log() -> str:
    if getattr(g, "body_too_large", False):
        return f"<{request.content_length} bytes, over the limit>"
    try:
        data = await request.get_data(as_text=False)
    except Exception:
        return "<unreadable>"
    return data.decode("utf-8", errors="replace")
