"""The ceiling of this stack: a bare ASGI app that reads the body and answers a fixed JSON reply.

Served by hypercorn's trio worker in bench/heartbeat.py, under the same wrk
load as roomd's heartbeat route.
"""

from __future__ import annotations

from typing import Any

REPLY = b'{"code":0,"message":"\\u8bf7\\u6c42\\u6210\\u529f"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(REPLY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": REPLY})
