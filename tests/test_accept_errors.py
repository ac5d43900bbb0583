"""The accept-failure log on a fake clock: one line a second at most, with what it left out."""

from __future__ import annotations

import errno

from loguru import logger

from roomd.http.accept_errors import AcceptErrorLog

EMFILE = OSError(errno.EMFILE, "Too many open files")


def test_failures_are_counted_each_and_logged_once_a_second() -> None:
    now = [100.0]
    counted: list[int] = []
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="INFO")
    try:
        errors = AcceptErrorLog(lambda: counted.append(1), clock=lambda: now[0])
        for tick in range(20):  # 2.5 s of failures, retried every 0.125 s
            now[0] = 100.0 + tick * 0.125
            errors.failed(EMFILE)
        errors.accepted()  # within a second of the last line: said by a later accept
        now[0] = 103.0
        errors.accepted()
        errors.accepted()
    finally:
        logger.remove(sink)
    assert len(counted) == 20
    assert len(lines) == 4, lines
    assert lines[0].startswith("cannot accept connections: EMFILE (Too many open files)")
    assert lines[1].endswith("; 7 more failures since the last line")
    assert lines[2].endswith("; 7 more failures since the last line")
    assert lines[3] == "accepting connections again after 20 failed attempts"
