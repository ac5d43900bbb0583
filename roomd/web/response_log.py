"""The response log file's writer: request lines handed to loguru in batches.

While the server runs, lines go to loguru once per `FLUSH_EVERY` seconds,
since a loguru call per request would cost more than the rest of a
heartbeat; each line keeps its own timestamp and the file's format (text or
JSON). Outside a running server (tests, tools) every line is written at once.
A batch reaches loguru raw, as several lines, so each request's line has its
control characters escaped here, before it joins a batch.
"""

from __future__ import annotations

import datetime
import json

import trio
from loguru import logger

from roomd.logs.setup import escape_controls

_sink = logger.bind(channel="response", actor="http")

FLUSH_EVERY = 0.1  # seconds


class ResponseLog:
    def __init__(self, *, as_json: bool) -> None:
        self._as_json = as_json
        self._lines: list[str] = []
        self._batching = False

    def add(self, message: str) -> None:
        message = escape_controls(message)
        now = datetime.datetime.now()  # local time, as in the other log lines
        if self._as_json:
            line = json.dumps(
                {
                    "time": now.astimezone().isoformat(),
                    "level": "INFO",
                    "actor": "http",
                    "message": message,
                    "channel": "response",
                },
                ensure_ascii=False,
            )
        else:
            line = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d} | INFO    | http | {message}"
        self._lines.append(line)
        if not self._batching:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            _sink.opt(raw=True).info(text)

    async def run_flusher(self) -> None:
        """Flush every FLUSH_EVERY seconds until cancelled, and once more on the way out."""
        self._batching = True
        try:
            while True:
                await trio.sleep(FLUSH_EVERY)
                self.flush()
        finally:
            self._batching = False
            self.flush()
