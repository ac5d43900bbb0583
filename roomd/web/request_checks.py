"""What roomd refuses about a request head before any route sees it.

- A head (request line and headers) over `server.max_header_bytes`: 431.
  h11 only bounds a head while it is incomplete, so a large head that
  arrives in one piece would get through; this counts what was received.
- Both Content-Length and Transfer-Encoding: 400. h11 lets
  Transfer-Encoding win, a proxy in front might not, and a request read two
  ways is how requests get smuggled.
- Any HTTP version but 1.0 and 1.1 (and 2 when hypercorn has switched to
  HTTP/2 itself, with `server.h2c` on): 505. With h2c off, this is where
  the HTTP/2 preface `PRI * HTTP/2.0` ends up.

Each refusal is an envelope reply with `Connection: close`.
"""

from __future__ import annotations

from typing import Any

from roomd.web.envelope import Code, Reply

SPOKEN_VERSIONS = frozenset({"1.0", "1.1", "2"})
# "<method> <path>?<query> HTTP/1.1\r\n" and the blank line after the headers
_REQUEST_LINE_EXTRA = len("  ? HTTP/1.1\r\n\r\n")
_HEADER_EXTRA = len(": \r\n")


def head_refusal(scope: dict[str, Any], max_header_bytes: int) -> Reply | None:
    size = len(scope["method"]) + len(scope.get("raw_path") or b"") + len(scope["query_string"]) + _REQUEST_LINE_EXTRA
    content_length = transfer_encoding = False
    for name, value in scope["headers"]:
        size += len(name) + len(value) + _HEADER_EXTRA
        if name == b"content-length":
            content_length = True
        elif name == b"transfer-encoding":
            transfer_encoding = True
    if size > max_header_bytes:
        return _refusal(431, f"the request line and headers are larger than {max_header_bytes} bytes")
    if content_length and transfer_encoding:
        return _refusal(400, "a request must not carry both Content-Length and Transfer-Encoding")
    version = scope.get("http_version", "1.1")
    if version not in SPOKEN_VERSIONS:
        return _refusal(505, f"HTTP/{version} is not served here; use HTTP/1.1")
    return None


def _refusal(status: int, detail: str) -> Reply:
    return Reply(Code.BAD_PARAMETER, {}, detail, None, status, close_connection=True)
