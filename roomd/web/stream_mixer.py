"""merge_stream's way out to Tencent's live mixing API (the protocol is roomd.qcloud.live_mix).

One long-lived HTTP client (the process's, shared with the WeChat login) and a
limiter of MAX_CONCURRENT_CALLS calls in flight, and nothing else shared: a slow
or hanging mixing API delays only the merge_stream calls waiting for it, never a
room. A call waits for a free slot at most until the request's deadline, then
gets at most `live.api_timeout` seconds, never past that deadline. Only
transport errors (no HTTP answer came) are retried, at most twice; any HTTP
answer is final. Each call is logged once with its room, user and Tencent's code
or the failure; the signed URL, its sign and `live.api_key` never reach a log.
"""

from __future__ import annotations

import re

import httpx
import trio
from loguru import logger

from roomd import upstream_replies
from roomd.config import LiveSettings
from roomd.qcloud.live_mix import CONTENT_TYPE, MixReply, mix_query, mix_url, parse_mix_reply

MAX_CONCURRENT_CALLS = 16  # mixing calls in flight at once; more wait for a slot, within their deadline
MAX_ATTEMPTS = 3  # the first and at most two retries, after transport errors only
RETRY_DELAY = 0.1  # seconds before the first retry, doubled for the next
_SIGN_IN_TEXT = re.compile(r"sign=[^&\s'\"]*")

log = logger.bind(actor="mixer")


class StreamMixer:
    def __init__(self, settings: LiveSettings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._limiter = trio.CapacityLimiter(MAX_CONCURRENT_CALLS)

    @property
    def configured(self) -> bool:
        return self._settings.app_id != 0 and bool(self._settings.api_key)

    @property
    def calls_in_flight(self) -> int:
        return int(self._limiter.borrowed_tokens)

    async def start_mix(self, body: bytes, *, room_id: str, user_id: str, now: int, deadline: float) -> MixReply:
        """POST `body` (the mixing parameters, JSON) signed at `now` (wall-clock seconds); Tencent's
        reply, or why there is none by `deadline` (trio time)."""
        outcome, attempts = await self._call(body, now=now, deadline=deadline)
        if outcome.result is not None:
            log.info(
                "merge_stream room={} user={} tencent_code={} attempts={}",
                room_id,
                user_id,
                outcome.tencent_code,
                attempts,
            )
        else:
            log.warning(
                "merge_stream failed room={} user={} attempts={}: {}", room_id, user_id, attempts, outcome.error
            )
        return outcome

    async def _call(self, body: bytes, *, now: int, deadline: float) -> tuple[MixReply, int]:
        settings = self._settings
        query = mix_query(settings.app_id, settings.api_key, now=now)
        url = mix_url(settings.api_base_url, query)
        secrets = (settings.api_key, query["sign"])
        attempts = 0
        with trio.move_on_at(deadline):
            async with self._limiter:
                with trio.move_on_after(settings.api_timeout):  # when it ends first; else the deadline's scope
                    while True:
                        attempts += 1
                        outcome, retry = await self._attempt(url, body, secrets)
                        if not retry or attempts >= MAX_ATTEMPTS:
                            return outcome, attempts
                        await trio.sleep(RETRY_DELAY * 2 ** (attempts - 1))
                why = f"no answer from the mixing API within live.api_timeout ({settings.api_timeout:g} s)"
                return MixReply(None, why), attempts
        if attempts == 0:
            why = f"all {MAX_CONCURRENT_CALLS} mixing calls were busy until the request's deadline"
        else:
            why = "no answer from the mixing API by the request's deadline"
        return MixReply(None, why), attempts

    async def _attempt(self, url: str, body: bytes, secrets: tuple[str, str]) -> tuple[MixReply, bool]:
        """One POST: its judgement, and whether a retry may help (only when no HTTP answer came)."""
        try:
            async with self._http.stream(
                "POST",
                url,
                content=body,
                headers={"Content-Type": CONTENT_TYPE},
                timeout=self._settings.api_timeout,
            ) as response:
                try:
                    content = await upstream_replies.read_at_most(response)
                except httpx.HTTPError as error:
                    return MixReply(None, f"the mixing API's reply broke off ({_describe(error, secrets)})"), False
                return parse_mix_reply(response.status_code, content), False
        except httpx.TransportError as error:  # refused, reset, timed out, closed before answering
            retry = not isinstance(error, httpx.UnsupportedProtocol)
            return MixReply(None, f"no answer from the mixing API ({_describe(error, secrets)})"), retry
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            return MixReply(None, f"the mixing API call failed ({_describe(error, secrets)})"), False


def _describe(error: Exception, secrets: tuple[str, ...]) -> str:
    """The error for logs and replies, without the sign or the key even if the error quotes the URL."""
    text = _SIGN_IN_TEXT.sub("sign=<redacted>", str(error) or "no detail")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return f"{type(error).__name__}: {text}"
