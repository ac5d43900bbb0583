"""One line per request in the response log: method, path, client, body, status, code, latency."""

from __future__ import annotations

import re
import time

from loguru import logger
from quart import Response, g, request

from roomd.web.edge import Edge, current_edge
from roomd.web.rooms import KNOWN_ENDPOINTS

MAX_LOGGED_BODY_CHARS = 2048
response_log = logger.bind(channel="response", actor="http")
# credentials never reach the log files: query values and JSON/form fields with these names
_SECRET_QUERY = re.compile(r"(?i)\b(token|usersig|secret)=[^&\s]*")
_SECRET_JSON = re.compile(r'(?i)"(token|usersig|secret)"\s*:\s*"[^"]*"')


def redact(text: str) -> str:
    text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=<redacted>", text)
    return _SECRET_JSON.sub(lambda m: f'"{m.group(1)}":"<redacted>"', text)


async def start_timer() -> None:
    g.started_at = time.perf_counter()


async def log_response(response: Response) -> Response:
    started = getattr(g, "started_at", None)
    seconds = time.perf_counter() - started if started is not None else 0.0
    latency_ms = seconds * 1000
    code = getattr(g, "reply_code", "-")
    edge = current_edge()
    edge.metrics.observe(route_label(edge), code, seconds)
    response_log.info(
        "{} {} ip={} body={} status={} code={} latency_ms={:.1f}",
        request.method,
        redact(request.full_path.rstrip("?")),
        request.remote_addr,
        await _body_for_log(),
        response.status_code,
        code,
        latency_ms,
    )
    return response


def route_label(edge: Edge) -> str:
    """A bounded label for the route: `<kind>/<endpoint>` for room routes, else the rule."""
    rule = request.url_rule
    if rule is None:
        return "unmatched"
    args = request.view_args or {}
    if "kind" in args:
        kind, endpoint = args["kind"], args.get("endpoint", "")
        if kind in edge.system.directories and endpoint in KNOWN_ENDPOINTS:
            return f"{kind}/{endpoint}"
        return "unmatched"
    return rule.rule


async def _body_for_log() -> str:
    if getattr(g, "body_too_large", False):
        return f"<{request.content_length} bytes, over the limit>"
    try:
        data = await request.get_data(as_text=False)
    except Exception:
        return "<unreadable>"
    text = redact(data.decode("utf-8", errors="replace"))
    if len(text) > MAX_LOGGED_BODY_CHARS:
        return text[:MAX_LOGGED_BODY_CHARS] + f"...<{len(text)} chars>"
    return text
