"""Replies of the services roomd calls (Tencent IM, WeChat, the live mixing API), read within bounds.

Their answers are a few hundred bytes. A service that is broken, or a
machine in the middle, could answer gigabytes, or JSON nested deeper than
the parser can go, or an error text of megabytes; roomd reads at most
MAX_REPLY_BYTES of a reply (more is a failure of that call), treats a reply
it cannot parse as not JSON, and passes on at most MAX_TEXT_CHARS of any
text from it (to a client's `detail` or to a log line).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the protocol modules (roomd.qcloud) use the rest without loading an HTTP client
    import httpx

MAX_REPLY_BYTES = 64 * 1024
MAX_TEXT_CHARS = 200


class NotJson(ValueError):
    """The reply could not be read as JSON (bad syntax, not UTF-8, or nested too deeply)."""


async def read_at_most(response: httpx.Response, limit: int = MAX_REPLY_BYTES + 1) -> bytes:
    """The reply's body, but no more than about `limit` bytes of it (decoded): a huge reply is cut."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)


def too_large(content: bytes) -> bool:
    return len(content) > MAX_REPLY_BYTES


def loads(content: bytes) -> Any:
    """json.loads that fails only with NotJson, whatever the bytes."""
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        raise NotJson from None


def shortened(value: object) -> str:
    """`value` as text of at most MAX_TEXT_CHARS characters (and an ellipsis when cut)."""
    text = str(value)
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "…"
