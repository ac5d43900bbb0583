"""One line per request in the response log (method, path, client, body, status, code,
latency), and the same request counted in the metrics.

The lines go through `ResponseLog` (response_log.py), which batches them.
"""

from __future__ import annotations

import re
import time

from quart import Response, g, request

from roomd.web.edge import Edge, current_edge

MAX_LOGGED_BODY_CHARS = 2048
# credentials never reach the log files: query values and JSON/form fields with these names
_SECRET_QUERY = re.compile(r"(?i)\b(token|usersig|secret)=[^&\s]*")
_SECRET_JSON = re.compile(r'(?i)"(token|usersig|secret)"\s*:\s*"[^"]*"')


def redact(text: str) -> str:
    if "=" in text:
        text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=<redacted>", text)
    if '"' in text:
        text = _SECRET_JSON.sub(lambda m: f'"{m.group(1)}":"<redacted>"', text)
    return text


def record_request(
    edge: Edge,
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
    edge.metrics.observe(route, code, seconds)
    if len(body) > MAX_LOGGED_BODY_CHARS:
        body = body[:MAX_LOGGED_BODY_CHARS] + f"...<{len(body)} chars>"
    edge.response_log.add(
        f"{method} {redact(target)} ip={client} body={redact(body)} status={status} code={code} "
        f"latency_ms={seconds * 1000:.1f}"
    )


# --- for the routes Quart serves ------------------------------------------------------


async def start_timer() -> None:
    g.started_at = time.perf_counter()


async def log_response(response: Response) -> Response:
    started = getattr(g, "started_at", None)
    edge = current_edge()
    record_request(
        edge,
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
