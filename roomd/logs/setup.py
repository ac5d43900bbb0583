"""Where log lines go (the console, response files, error files) and what they may hold.

Every record carries `extra[actor]` (the actor path, e.g.
`root/multi_room/room_ab12`), so one grep follows one room. Records bound
with `channel="response"` are the per-request lines and go to the response
files only.

Log lines quote what clients send, so nothing a client sends may start a
line of its own: a patcher escapes every control and line-separator
character in each record's message, and exceptions are formatted here, each
traceback line escaped on its own, so one record is one line plus, for an
exception, its traceback lines. Tracebacks never show local variables
(loguru's `diagnose` is off): they may hold secrets.

No sink writes on the thread that logs (the trio thread): each one is a
`BackgroundSink` with a thread of its own, so a slow disk or console costs
log lines, never request latency. `flush_logs()` waits for what is queued;
`roomd serve` calls it before it exits.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from loguru import logger

from roomd.config import LogSettings
from roomd.config.durations import parse_duration
from roomd.logs.background import BackgroundSink, Writer
from roomd.logs.files import DROPPED_WRITES, RotatingFile

TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {extra[actor]} | {message}"
_TEXT_LINE = TEXT_FORMAT + "\n"
_TEXT_LINE_AND_TRACEBACK = TEXT_FORMAT + "\n{extra[exception_text]}\n"

# C0 controls (CR, LF, TAB included), DEL, C1 controls (NEL included), and the Unicode line
# and paragraph separators: everything a terminal, an editor or a log shipper may take as a
# line break or a command
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"
FLUSH_TIMEOUT = 30.0  # seconds flush_logs() waits by default: a hung disk must not hang the exit

_sinks: list[BackgroundSink] = []  # the sinks configure_logging() added last


def escape_controls(text: str) -> str:
    """`text` with each control character written as `\\x0a` or `\\u2028`."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def traceback_lines(kind: type[BaseException], value: BaseException | None, tb: TracebackType | None) -> list[str]:
    """The traceback of an exception and its causes, as lines that each hold no line break."""
    lines: list[str] = []
    chain: list[tuple[str | None, traceback.TracebackException]] = []
    current: traceback.TracebackException | None = traceback.TracebackException(
        kind,
        value,  # type: ignore[arg-type]  # the stub wants a value; None is handled
        tb,
        compact=True,
    )
    while current is not None:
        if current.__cause__ is not None:
            chain.append((_CAUSE, current))
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            chain.append((_CONTEXT, current))
            current = current.__context__
        else:
            chain.append((None, current))
            current = None
    for link, exception in reversed(chain):
        if link is not None:
            lines.append(link)
        lines.extend(_exception_lines(exception))
    return lines


def _exception_lines(exception: traceback.TracebackException) -> list[str]:
    lines: list[str] = []
    if exception.stack:
        lines.append("Traceback (most recent call last):")
        for frame_text in exception.stack.format():
            lines.extend(escape_controls(line) for line in frame_text.rstrip("\n").split("\n"))
    # "Type: message" is one piece however many lines the message has: it must stay one line
    lines.extend(escape_controls(piece.rstrip("\n")) for piece in exception.format_exception_only())
    for number, member in enumerate(exception.exceptions or (), start=1):  # an ExceptionGroup's
        lines.append(f"  +---- {number} ----")
        lines.extend(f"  | {line}" for line in _exception_lines(member))
    return lines


def make_safe(record: Any) -> None:
    """The patcher: escape what a record may carry from clients, and format its exception."""
    extra = record["extra"]
    if extra.get("channel") == "response":
        return  # ResponseLog escaped each line itself; the newlines of its batches are real
    record["message"] = escape_controls(record["message"])
    actor = extra.get("actor")
    if isinstance(actor, str):
        extra["actor"] = escape_controls(actor)
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        extra["exception_text"] = "\n".join(traceback_lines(exception.type, exception.value, exception.traceback))


def make_safe_and_json(record: Any) -> None:
    make_safe(record)
    if record["extra"].get("channel") != "response":
        record["extra"]["json"] = json_line(record)


def text_format(record: Any) -> str:  # a callable: loguru adds no exception text of its own
    return _TEXT_LINE_AND_TRACEBACK if "exception_text" in record["extra"] else _TEXT_LINE


def json_format(record: Any) -> str:
    return "{extra[json]}\n"


def json_line(record: Any) -> str:
    """One log record as one JSON object, with the actor path as a field of its own."""
    data: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "actor": record["extra"].get("actor", "-"),
        "message": record["message"],
    }
    if record["extra"].get("channel") == "response":
        data["channel"] = "response"
    if "exception_text" in record["extra"]:
        data["exception"] = record["extra"]["exception_text"]
    return json.dumps(data, ensure_ascii=False, default=str)


def _is_response(record: Any) -> bool:
    return bool(record["extra"].get("channel") == "response")


def _is_not_response(record: Any) -> bool:
    return bool(record["extra"].get("channel") != "response")


class Console:
    """The console sink: a failing stderr (a full disk it is redirected to, a closed pipe)
    drops the line and counts it, instead of loguru printing the record to that same stderr."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, message: str) -> None:
        try:
            self._stream.write(message)
            self._stream.flush()
        except (OSError, ValueError):
            DROPPED_WRITES.add()


def configure_logging(settings: LogSettings) -> None:
    """Replace every sink with roomd's; safe to call again."""
    logger.remove()  # the previous sinks write what they have queued, then stop
    as_json = settings.format == "json"
    logger.configure(extra={"actor": "-", "channel": "app"}, patcher=make_safe_and_json if as_json else make_safe)
    safe: dict[str, Any] = {
        "format": json_format if as_json else text_format,
        "backtrace": False,  # no frames beyond the caught one ...
        "diagnose": False,  # ... and no local variables: they may hold secrets
        "colorize": False,
    }
    directory = Path(settings.dir)
    bounds: dict[str, Any] = {
        "rotation": parse_duration(settings.rotation),
        "retention": parse_duration(settings.retention),
        "max_total_bytes": settings.max_bytes // 3,  # a third each for the response, app and error files
    }
    _sinks.clear()
    _add(Console(sys.stderr), "console", level=settings.level.upper(), filter=_is_not_response, **safe)
    response_files = RotatingFile(directory / "response", "response", **bounds)
    app_files = RotatingFile(directory / "app", "app", **bounds)  # rooms' and members' lives, what an operator greps
    error_files = RotatingFile(directory / "error", "error", **bounds)
    _add(response_files, "response", level="INFO", filter=_is_response, **safe)
    _add(app_files, "app", level=settings.level.upper(), filter=_is_not_response, **safe)
    _add(error_files, "error", level="WARNING", filter=_is_not_response, **safe)
    _route_standard_logging()


def _add(target: Writer, name: str, **options: Any) -> None:
    sink = BackgroundSink(target, name=name)
    _sinks.append(sink)
    logger.add(sink, **options)


def flush_logs(timeout: float = FLUSH_TIMEOUT) -> bool:
    """Wait until every line logged so far is written (or dropped); False if `timeout` passed first.

    It blocks: call it in tests, tools and on the way out of the process, never on the trio thread.
    """
    deadline = time.monotonic() + timeout
    flushed = True
    for sink in list(_sinks):
        flushed = sink.drain(max(0.0, deadline - time.monotonic())) and flushed
    return flushed


class _ToLoguru(logging.Handler):
    """Hypercorn and the libraries log through `logging`; send them to the same sinks."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(actor=record.name).opt(exception=record.exc_info).log(level, record.getMessage())


def _route_standard_logging() -> None:
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.INFO, force=True)
    for noisy in ("httpx", "httpcore", "coredis"):  # coredis: e.g. each script loaded again after a Redis restart
        logging.getLogger(noisy).setLevel(logging.WARNING)
