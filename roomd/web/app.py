"""The ASGI application: request heads and body deadlines checked first (http_guard), room
routes served directly (room_asgi), everything else by Quart, with the envelope on every
error, draining and request logs."""

from __future__ import annotations

import encodings.idna  # noqa: F401  werkzeug imports it on the first request; then a file descriptor may be lacking

from loguru import logger
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from roomd.web import ops, utils_routes
from roomd.web.context import AppContext
from roomd.web.envelope import Code, RequestError, draining_reply, envelope, error_reply, to_response
from roomd.web.http_guard import guarded
from roomd.web.request_log import log_response, start_timer
from roomd.web.room_asgi import ASGIApp, with_room_routes

ALWAYS_SERVED = frozenset({"/healthz", "/readyz", "/metrics", "/debug/actors", "/openapi.json"})
log = logger.bind(actor="http")


def create_app(ctx: AppContext) -> ASGIApp:
    """The whole HTTP surface of roomd as one ASGI app."""
    return guarded(ctx, with_room_routes(ctx, create_quart_app(ctx)))


def create_quart_app(ctx: AppContext) -> QuartTrio:
    """Utility, operations and error routes; room routes are answered before Quart sees them."""
    app = QuartTrio("roomd")
    app.config["MAX_CONTENT_LENGTH"] = ctx.settings.server.max_body_bytes
    app.extensions["roomd"] = ctx
    prefix = ctx.settings.server.route_prefix

    app.add_url_rule("/healthz", view_func=ops.healthz, methods=["GET"])
    app.add_url_rule("/readyz", view_func=ops.readyz, methods=["GET"])
    app.add_url_rule("/metrics", view_func=ops.metrics, methods=["GET"])
    app.add_url_rule("/debug/actors", view_func=ops.debug_actors, methods=["GET"])
    app.add_url_rule("/openapi.json", view_func=ops.openapi, methods=["GET"])
    for name in ("get_login_info", "logfilelist", "getlogfile", "check_config"):
        app.add_url_rule(f"{prefix}/utils/{name}", view_func=getattr(utils_routes, name), methods=["GET"])

    @app.before_request
    async def refuse_while_draining() -> Response | None:
        await start_timer()
        if ctx.draining and request.path not in ALWAYS_SERVED:
            return to_response(draining_reply())  # Connection: close, this listener is closing
        return None

    app.after_request(log_response)

    @app.errorhandler(RequestError)
    async def on_request_error(error: RequestError) -> Response:
        return to_response(error_reply(error))

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            detail = f"no route for {request.method} {request.path}"
        elif status == 405:
            detail = f"{request.path} does not accept {request.method}"
        elif status == 413:
            g.body_too_large = True
            detail = f"request body is larger than {ctx.settings.server.max_body_bytes} bytes"
        else:
            detail = error.description or error.name
        code = Code.BUSY if status == 503 else Code.BAD_PARAMETER
        return envelope(code, detail=detail, http_status=status)

    @app.errorhandler(Exception)
    async def on_unexpected(error: Exception) -> Response:
        log.opt(exception=error).error("unexpected error on {} {}", request.method, request.path)
        return envelope(Code.INTERNAL, detail="unexpected server error; it has been logged")

    return app
