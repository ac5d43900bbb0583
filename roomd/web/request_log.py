"""The response log: one line per request (method, path, client, body, status, code,
latency), with credentials redacted.

While the server runs, lines go to loguru once per `FLUSH_EVERY` seconds
(`ResponseLog`), since a loguru call per request would cost more than the
rest of a heartbeat; each line keeps its own timestamp and the file's
format (text or JSON). Outside a running server (tests, tools) every line
goes to loguru at once. Either way the loguru call only queues the batch
for the response file's own thread (logs/background.py): no file I/O on the
trio thread. A batch reaches loguru raw, as several lines, so each
request's line has its control characters escaped here, before it joins a
batch.
"""

from __future__ import annotations

import datetime
import json
import re
from urllib.parse import unquote

import trio
from loguru import logger

from roomd.logs.setup import escape_controls

MAX_LOGGED_BODY_CHARS = 2048
# Credentials never reach the log files: the values of query and form parameters, and of
# JSON fields, whose names contain token, usersig or secret (txSecret, userSig, secret_key).
# ... and `code`, the one-time WeChat login code that get_im_login_info and get_login_info take
_SECRET_NAME = r"(?=[A-Za-z0-9_]*?(?:token|usersig|secret)|code(?![A-Za-z0-9_]))[A-Za-z0-9_]++"  # possessive
# `=` may be percent-encoded, once or twice (a push URL inside a form-encoded body); a value
# ends at `&`, whitespace, a quote, a backslash (JSON escapes), `#` or an encoded `&`
_SECRET_QUERY = re.compile(rf"(?i)\b({_SECRET_NAME})(=|%3D|%253D)(?:[^&\s\"'\\#%]|%(?!26|2526)[0-9A-Fa-f]{{2}})*+")
_SECRET_JSON = re.compile(rf'(?i)"({_SECRET_NAME})"\s*:\s*"(?:[^"\\]|\\.)*+"')


# every name the patterns match holds one of these, in the case folding of `re.IGNORECASE`
# (which also takes the Kelvin sign for k, the long s for s and the dotless i for i)
_SECRET_WORDS = ("token", "usersig", "secret", "code")


_JSON_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
DECODED = "<escapes decoded> "


def redact(text: str) -> str:
    """`text` with credentials redacted. A name or `=` may also be written with escapes (`t%6Fken=`,
    `"user\\u0053ig"`), which the parsers decode but the patterns do not see: text that still
    holds a credential once its escapes are decoded is logged decoded (marked so), redacted."""
    redacted = _redacted(text)
    if "%" in redacted or "\\" in redacted:
        decoded = _unescaped(redacted)
        shown = _redacted(decoded)
        if shown != decoded:
            return DECODED + shown
    return redacted


def _redacted(text: str) -> str:
    folded = text.casefold().replace("\u0131", "i")
    if not any(word in folded for word in _SECRET_WORDS):  # most requests: nothing to scan for
        return text
    if "=" in text or "%" in text:
        text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)
    if '"' in text:
        text = _SECRET_JSON.sub(lambda m: f'"{m.group(1)}":"<redacted>"', text)
    return text


def _unescaped(text: str) -> str:
    """`text` with JSON `\\u` escapes and percent escapes (twice: a URL inside a form) decoded."""
    text = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    for _ in range(2):
        text = unquote(text, errors="replace")
    return text


def request_line(*, method: str, target: str, client: str, body: str, status: int, code: object, seconds: float) -> str:
    """A request's line in the response log: credentials redacted, a long body cut."""
    body = redact(body)  # before the cut, which could leave a secret without its closing quote
    if len(body) > MAX_LOGGED_BODY_CHARS:
        body = body[:MAX_LOGGED_BODY_CHARS] + f"...<{len(body)} chars>"
    target = redact(target)
    return f"{method} {target} ip={client} body={body} status={status} code={code} latency_ms={seconds * 1000:.1f}"


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
