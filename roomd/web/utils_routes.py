"""`GET <prefix>/utils/...`: the later clients' way to get IM login info."""

from __future__ import annotations

from quart import Response, request

from roomd.web.edge import current_edge
from roomd.web.envelope import ok
from roomd.web.rooms import im_login_fields
from roomd.web.validation import Params


async def get_login_info() -> Response:
    params = Params(dict(request.args))
    user_id = params.ident("userID")
    return ok(**im_login_fields(current_edge(), user_id))
