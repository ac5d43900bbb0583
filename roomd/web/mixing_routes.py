"""merge_stream: a room member asks Tencent's live mixing API to mix the room's streams."""

from __future__ import annotations

from roomd.web.room_call import Handler

ENDPOINTS: dict[str, Handler] = {}
