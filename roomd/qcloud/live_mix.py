"""Tencent's live mixing API as merge_stream calls it: the signed URL, the body, the judgement of replies.

POST <api_base_url>/common_access?appid=<app_id>&interface=mix_streamv2.start_mix_stream_advanced
     &t=<now + 60>&sign=<md5(api_key + t), lowercase hex>
with the client's mixing parameters, JSON text, as the body (labelled as a form, the way the
later Node.js server sent it). `t` is when the signed request stops being accepted.
Pure: no I/O, no trio; the HTTP call is roomd.web.stream_mixer's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from roomd import upstream_replies

PATH = "/common_access"
INTERFACE = "mix_streamv2.start_mix_stream_advanced"
SIGN_VALIDITY = 60  # seconds: t = now + this
CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_REPLY_BYTES = upstream_replies.MAX_REPLY_BYTES  # a longer reply is not read to its end, and judged a failure


def mix_sign(api_key: str, t: int) -> str:
    """sign = md5(api_key + str(t)), lowercase hex."""
    return hashlib.md5((api_key + str(t)).encode("utf-8")).hexdigest()


def mix_query(app_id: int, api_key: str, *, now: int) -> dict[str, str]:
    """The query parameters of one call made at `now` (wall-clock seconds)."""
    t = now + SIGN_VALIDITY
    return {"appid": str(app_id), "interface": INTERFACE, "t": str(t), "sign": mix_sign(api_key, t)}


def mix_url(base_url: str, query: dict[str, str]) -> str:
    """The signed URL of one call (`query` from mix_query). Its sign is a credential until `t`: never log it."""
    return f"{base_url.rstrip('/')}{PATH}?{urlencode(query)}"


def encode_mix_params(params: dict[str, Any]) -> bytes:
    """The body: compact JSON, UTF-8. ValueError for NaN or Infinity (not JSON), UnicodeEncodeError
    for a lone surrogate (not text), RecursionError for nesting beyond what json can write."""
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def strict_json(text: str | bytes) -> Any:
    """json.loads without NaN and Infinity, which are not JSON (ValueError, as for any bad text)."""
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True)
class MixReply:
    """Tencent's reply as a JSON object (whatever its own `code`), or why there is none."""

    result: dict[str, Any] | None
    error: str = ""

    @property
    def tencent_code(self) -> object:
        return self.result.get("code") if self.result is not None else None


def parse_mix_reply(status: int, content: bytes) -> MixReply:
    """An HTTP 200 answer whose body is a JSON object is Tencent's result; anything else is a failure."""
    if status != 200:
        return MixReply(None, f"the mixing API answered HTTP {status}")
    if upstream_replies.too_large(content):
        return MixReply(None, f"the mixing API's reply is larger than {MAX_REPLY_BYTES} bytes")
    try:
        result = strict_json(content)
        if isinstance(result, dict):
            encode_mix_params(result)  # it is passed on to the client: it must be writable as UTF-8 JSON
    except (ValueError, RecursionError):  # UnicodeDecodeError and UnicodeEncodeError are ValueErrors
        return MixReply(None, "the mixing API's reply is not JSON")
    if not isinstance(result, dict):
        return MixReply(None, "the mixing API's reply is not a JSON object")
    return MixReply(result)
