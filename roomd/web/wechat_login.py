"""Turning a WeChat mini-program login code into an openid, falling back quietly but visibly.

A failure never fails the request: the caller gets a random userID instead
and the reason is logged as a warning. So does a lookup that outlasts its
own timeout or the request's deadline.
"""

from __future__ import annotations

import math

import httpx
import trio
from loguru import logger

from roomd import upstream_replies
from roomd.config import WechatSettings
from roomd.qcloud.wechat import PATH, jscode2session_params, parse_jscode2session

log = logger.bind(actor="wechat")


class WechatLogin:
    def __init__(self, settings: WechatSettings, http: httpx.AsyncClient, *, timeout: float = 5.0) -> None:
        self._settings = settings
        self._http = http
        self._timeout = timeout

    @property
    def enabled(self) -> bool:
        return bool(self._settings.app_id and self._settings.app_secret)

    async def openid(self, code: str, *, deadline: float = math.inf) -> str | None:
        """The openid for `code`, or None; never past `deadline` (trio time)."""
        params = jscode2session_params(self._settings.app_id, self._settings.app_secret, code)
        url = self._settings.base_url.rstrip("/") + PATH
        with trio.move_on_at(deadline), trio.move_on_after(self._timeout) as whole_call:
            try:
                async with self._http.stream("GET", url, params=params, timeout=self._timeout) as response:
                    content = await upstream_replies.read_at_most(response)
            except httpx.HTTPError as error:
                why = upstream_replies.shortened(error)
                log.warning("jscode2session failed ({}: {}); using a random userID", type(error).__name__, why)
                return None
            openid, why = parse_jscode2session(response.status_code, content)
            if openid is None:
                log.warning("jscode2session failed ({}); using a random userID", why)
            return openid
        if whole_call.cancelled_caught:
            log.warning("jscode2session did not answer within {:g} s; using a random userID", self._timeout)
        else:
            log.warning("jscode2session did not answer by the request's deadline; using a random userID")
        return None
