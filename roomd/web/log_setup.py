"""Where log lines go: the console, hourly response files and hourly error files.

Every record carries `extra[actor]` (the actor path, e.g.
`root/multi_room/room_ab12`), so one grep follows one room. Records bound
with `channel="response"` are the per-request lines and go to the response
files only.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from loguru import logger

from roomd.config import LogSettings

TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {extra[actor]} | {message}"


def json_format(record: Any) -> str:  # a callable: loguru adds no exception text of its own
    return "{extra[json]}\n"



def _is_response(record: Any) -> bool:
    return record["extra"].get("channel") == "response"


def _is_not_response(record: Any) -> bool:
    return record["extra"].get("channel") != "response"


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
    if record["exception"] is not None:
        kind, value, tb = record["exception"]
        data["exception"] = "".join(traceback.format_exception(kind, value, tb))
    return json.dumps(data, ensure_ascii=False, default=str)


def _add_json_field(record: Any) -> None:
    record["extra"]["json"] = json_line(record)


def configure_logging(settings: LogSettings) -> None:
    """Replace every sink with roomd's; safe to call again."""
    logger.remove()
    as_json = settings.format == "json"
    logger.configure(
        extra={"actor": "-", "channel": "app"}, patcher=_add_json_field if as_json else None
    )
    line_format: Any = json_format if as_json else TEXT_FORMAT
    level = settings.level.upper()
    logger.add(sys.stderr, level=level, format=line_format, filter=_is_not_response)
    directory = Path(settings.dir)
    common: dict[str, Any] = {
        "rotation": settings.rotation,
        "retention": settings.retention,
        "format": line_format,
        "encoding": "utf-8",
    }
    logger.add(
        str(directory / "response" / "response-{time:YYYY-MM-DD-HH}.log"),
        level="INFO",
        filter=_is_response,
        **common,
    )
    logger.add(
        str(directory / "error" / "error-{time:YYYY-MM-DD-HH}.log"),
        level="WARNING",
        filter=_is_not_response,
        **common,
    )
    _route_standard_logging()


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
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
