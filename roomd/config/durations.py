"""Durations written the way operators write them: "1 hour", "30 minutes", "7 days".

`log.rotation` and `log.retention` are such strings. One parser serves both
the loader, which refuses a bad value at start, and the log files, which use
the value, so the two always agree on what a value means.
"""

from __future__ import annotations

import re
from datetime import timedelta

_SECONDS_PER_UNIT: dict[str, int] = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")


def parse_duration(text: str) -> timedelta:
    """`text` ("1 hour", "30 minutes", "1.5 days") as a timedelta; ValueError unless it is an
    amount followed by a unit (seconds, minutes, hours, days or weeks), at least 1 second."""
    match = _DURATION.match(text)
    unit = _SECONDS_PER_UNIT.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"not a duration: {text!r}")
    try:
        duration = timedelta(seconds=float(match.group(1)) * unit)
    except OverflowError:
        raise ValueError(f"duration too long: {text!r}") from None
    if duration < timedelta(seconds=1):
        raise ValueError(f"duration must be at least 1 second: {text!r}")
    return duration


def is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True
