"""Every route roomd serves: path -> (methods, handler), built once at start.

Room routes are `<prefix>/<kind>/<endpoint>` for every configured kind, all
POST; the utility pages are `<prefix>/utils/<name>`, GET (get_login_info also POST); the operations
routes sit at the root. Probes and metrics are answered while draining.
"""

from __future__ import annotations

from roomd.web import admin_routes, console, ops, rooms, utils_routes
from roomd.web.context import AppContext
from roomd.web.pipeline import Route, Routes

POST = frozenset({"POST"})
GET = frozenset({"GET", "HEAD"})
ADMIN = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE"})  # each admin path checks its own


def build(ctx: AppContext) -> Routes:
    table = Routes()
    prefix = ctx.settings.server.route_prefix
    for kind in ctx.router.kinds:
        for endpoint in rooms.KNOWN_ENDPOINTS:
            route = Route(f"{kind}/{endpoint}", POST, rooms.answer, kind=kind, endpoint=endpoint)
            table.add(f"{prefix}/{kind}/{endpoint}", route)
    for name, handler in utils_routes.PAGES.items():
        methods = GET | POST if name == "get_login_info" else GET  # later clients may POST it
        table.add(f"{prefix}/utils/{name}", Route(f"{prefix}/utils/{name}", methods, handler))
    table.add("/healthz", Route("/healthz", GET, ops.healthz, always_served=True))
    table.add("/readyz", Route("/readyz", GET, ops.readyz, always_served=True))
    table.add("/metrics", Route("/metrics", GET, ops.metrics, always_served=True))
    table.add("/debug/actors", Route("/debug/actors", GET, ops.debug_actors, always_served=True))
    table.add("/openapi.json", Route("/openapi.json", GET, ops.openapi, always_served=True))
    table.add_prefix(admin_routes.PREFIX, Route("admin", ADMIN, admin_routes.answer))
    table.add("/console", Route("/console", GET, console.page))
    table.add("/console/login", Route("/console/login", GET | POST, console.login, log_body=False))  # the admin key
    table.add("/console/logout", Route("/console/logout", POST, console.logout))
    for name in console.STATIC:
        table.add(f"/console/{name}", Route(f"/console/{name}", GET, console.static))
    return table
