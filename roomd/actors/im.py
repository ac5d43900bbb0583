"""The IM actor: the one place that talks to Tencent IM for rooms.

With IM not configured (sdk_app_id 0) every call is skipped and logged at
debug level, so the server runs on its embedded defaults.
"""

from __future__ import annotations

import trio
from loguru import logger

from roomd.actors.replies import Refused


class SkippedIm:
    """IM not configured: group calls succeed without leaving the process."""

    def __init__(self, path: str) -> None:
        self.log = logger.bind(actor=path)
        self.skipped = 0

    async def create_group(self, group_id: str, name: str) -> Refused | None:
        await trio.lowlevel.checkpoint()
        self._skip("create_group", group_id)
        return None

    def notify_pusher_change(self, group_id: str) -> None:
        self._skip("send_group_system_notification", group_id)

    def destroy_group(self, group_id: str) -> None:
        self._skip("destroy_group", group_id)

    def _skip(self, api: str, group_id: str) -> None:
        self.skipped += 1
        self.log.debug("IM not configured; skipped {} group={}", api, group_id)
