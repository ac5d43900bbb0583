"""Audiences (viewers who do not push) and custom room fields: the later clients' live_room endpoints."""

from __future__ import annotations

from roomd.web.room_call import Handler

ENDPOINTS: dict[str, Handler] = {}
