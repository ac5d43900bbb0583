"""Logs are safe against hostile clients and failing disks (unit level, fast).

Client input cannot start a log line of its own, secrets are redacted, the
log files rotate by time and size and are pruned by age and total size, and
a failing write is dropped and counted, never raised, and writing resumes
once the fault is gone.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import trio
import trio.lowlevel
from loguru import logger
from prometheus_client import CollectorRegistry, generate_latest

from roomd.config import ConfigError, LogSettings, load_settings
from roomd.config.durations import parse_duration
from roomd.logs.files import DROPPED_WRITES, DroppedWrites, RotatingFile, open_for_append
from roomd.logs.setup import Console, configure_logging, escape_controls, flush_logs
from roomd.web.metrics import LogWritesCollector
from roomd.web.request_log import DECODED, MAX_LOGGED_BODY_CHARS, ResponseLog, redact, request_line

SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LINE_BREAKS_BUT_LF = re.compile("[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
ANY_CONTROL_BUT_LF = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| ")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# --- escaping -----------------------------------------------------------------------------

CONTROL_CLASSES = {
    "NUL": "\x00",
    "BEL": "\x07",
    "TAB": "\t",
    "LF": "\n",
    "VT": "\x0b",
    "FF": "\x0c",
    "CR": "\r",
    "ESC": "\x1b",
    "FS..US": "\x1c",
    "US": "\x1f",
    "DEL": "\x7f",
    "C1 first": "\x80",
    "NEL": "\x85",
    "C1 last": "\x9f",
    "LINE SEPARATOR": "\u2028",
    "PARAGRAPH SEPARATOR": "\u2029",
}


@pytest.mark.parametrize("char", CONTROL_CLASSES.values(), ids=CONTROL_CLASSES.keys())
def test_every_control_character_is_escaped(char: str) -> None:
    escaped = escape_controls(f"a{char}FORGED | INFO")
    code = ord(char)
    assert escaped == (f"a\\x{code:02x}FORGED | INFO" if code < 0x100 else f"a\\u{code:04x}FORGED | INFO")
    assert escaped.splitlines() == [escaped] and escaped.isprintable()


def test_text_without_control_characters_is_passed_through_untouched() -> None:
    text = 'POST /weapp/multi_room/pusher_heartbeat body={"roomID":"房间 é"} status=200 code=0'
    assert escape_controls(text) is text  # the cheap path: a search, no copy
    assert escape_controls("\u00a0\u2027\u202a") == "\u00a0\u2027\u202a"  # printable neighbours stay


# --- the configured sinks: console and error file, text and JSON -----------------------------


@pytest.fixture
def configure(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Configure roomd's logging into tmp_path; called in the test itself, since capsys gives
    each test phase a stream of its own."""

    def configure_into_tmp_path(log_format: str = "text") -> Path:
        configure_logging(LogSettings(dir=str(tmp_path), format=log_format))
        return tmp_path

    try:
        yield configure_into_tmp_path
    finally:
        logger.remove()
        logger.configure(patcher=lambda record: None, extra={})
        logger.add(sys.stderr)


def _raise_with_a_secret_local(detail: str) -> None:
    usersig_in_a_local = "local-secret-0f9e8d7c"  # diagnose would print this value
    raise ValueError(f"bad input {detail} {len(usersig_in_a_local)}")


def _log_hostile_records() -> None:
    forged = "\r\n2026-01-01 00:00:00.000 | INFO    | root | FORGED\u2028FORGED\x85FORGED"
    logger.bind(actor="root/http").warning("client sent {}", forged)
    try:
        try:
            _raise_with_a_secret_local(forged)
        except ValueError as error:
            raise RuntimeError(f"wrapped{forged}") from error
    except RuntimeError:
        logger.bind(actor="root/im").exception("it broke{}", forged)


def test_text_records_are_one_line_each_and_tracebacks_are_escaped(
    configure: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    configured = configure("text")
    _log_hostile_records()
    assert flush_logs()  # the sinks write on threads of their own
    console = capsys.readouterr().err
    error_file = next((configured / "error").glob("error-*.log")).read_text()
    for text in (console, error_file):
        assert LINE_BREAKS_BUT_LF.search(text) is None and ANY_CONTROL_BUT_LF.search(text) is None
        lines = text.splitlines()
        records = [line for line in lines if RECORD_START.match(line)]
        assert len(records) == 2 and all(not line.startswith("2026-01-01 00:00:00.000") for line in lines)
        assert records[0].endswith(
            "| WARNING | root/http | client sent \\x0d\\x0a2026-01-01 00:00:00.000 | INFO    | root | FORGED"
            "\\u2028FORGED\\x85FORGED"
        )
        assert not any(line.startswith("FORGED") for line in lines)
        trace = lines[lines.index(records[1]) + 1 :]
        assert trace[0] == "Traceback (most recent call last):"
        assert any(line.startswith("ValueError: bad input \\x0d\\x0a2026-01-01 00:00:00.000 | INFO") for line in trace)
        assert "The above exception was the direct cause of the following exception:" in trace
        assert trace[-1].startswith("RuntimeError: wrapped\\x0d\\x0a2026-01-01")
        assert "local-secret-0f9e8d7c" not in text  # loguru's diagnose is off


def test_json_records_are_one_object_per_line_with_escaped_text(
    configure: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    configured = configure("json")
    _log_hostile_records()
    assert flush_logs()  # the sinks write on threads of their own
    console = capsys.readouterr().err
    error_file = next((configured / "error").glob("error-*.log")).read_text()
    for text in (console, error_file):
        assert ANY_CONTROL_BUT_LF.search(text) is None  # json.dumps leaves DEL, C1, U+2028 raw
        records = [json.loads(line) for line in text.splitlines()]
        assert [r["level"] for r in records] == ["WARNING", "ERROR"]
        assert records[0]["message"].startswith("client sent \\x0d\\x0a2026-01-01")
        assert "\\u2028FORGED\\x85FORGED" in records[0]["message"]
        exception_lines = records[1]["exception"].split("\n")
        assert exception_lines[-1].startswith("RuntimeError: wrapped\\x0d\\x0a2026-01-01")
        assert all(ANY_CONTROL_BUT_LF.search(line) is None for line in exception_lines)
        assert "local-secret-0f9e8d7c" not in text


def test_libraries_logging_through_the_standard_module_are_escaped_too(
    configure: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    configure("text")
    logging.getLogger("http-server").warning("bad request: %s", "GET /\r\nFORGED")
    assert flush_logs()
    console = capsys.readouterr().err.splitlines()
    assert len(console) == 1 and console[0].endswith("| http-server | bad request: GET /\\x0d\\x0aFORGED")


# --- the response log ---------------------------------------------------------------------------


async def test_batched_response_lines_keep_one_line_per_request(
    configure: Callable[[str], Path], autojump_clock: trio.abc.Clock
) -> None:
    configured = configure("text")
    response_log = ResponseLog(as_json=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(response_log.run_flusher)
        await trio.lowlevel.checkpoint()
        response_log.add("POST /weapp/a\r\nFORGED | INFO body=x\u2028FORGED\x85y status=404")
        response_log.add("POST /weapp/b body={}\x00\x7f status=200")
        await trio.sleep(0.25)  # virtual time: the flusher writes the batch
        response_log.add("POST /weapp/c body={} status=200")
        nursery.cancel_scope.cancel()  # the flusher writes what is left on the way out
    assert flush_logs()
    text = next((configured / "response").glob("response-*.log")).read_text()
    lines = text.splitlines()
    assert len(lines) == 3 and all(RECORD_START.match(line) for line in lines)
    assert lines[0].endswith(
        "| INFO    | http | POST /weapp/a\\x0d\\x0aFORGED | INFO body=x\\u2028FORGED\\x85y status=404"
    )
    assert lines[1].endswith("body={}\\x00\\x7f status=200")
    assert ANY_CONTROL_BUT_LF.search(text) is None


def test_json_response_lines_are_escaped_before_encoding(configure: Callable[[str], Path]) -> None:
    configured = configure("json")
    response_log = ResponseLog(as_json=True)
    response_log.add("POST /x body=\u2028\x85\x7f")
    assert flush_logs()
    [line] = next((configured / "response").glob("response-*.log")).read_text().splitlines()
    assert json.loads(line)["message"] == "POST /x body=\\u2028\\x85\\x7f"


# --- redaction ------------------------------------------------------------------------------------

PUSH_URL = "rtmp://h/live/8888_u?bizid=8888&txSecret=0a1b2c3d4e5f&txTime=5F5E0FF"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "/weapp/multi_room/logout?userID=u&token=1700.ab12.cdef",
            "/weapp/multi_room/logout?userID=u&token=<redacted>",
        ),
        (
            "/weapp/multi_room/login?userSig=eJy*-_A%2Bb&sdkAppID=1",
            "/weapp/multi_room/login?userSig=<redacted>&sdkAppID=1",
        ),
        (
            f'{{"pushURL":"{PUSH_URL}"}}',
            '{"pushURL":"rtmp://h/live/8888_u?bizid=8888&txSecret=<redacted>&txTime=5F5E0FF"}',
        ),
        ('{"pushURL":"rtmp://h/s?txSecret=0a1b2c"}', '{"pushURL":"rtmp://h/s?txSecret=<redacted>"}'),
        (
            '{"u":"rtmp:\\/\\/h?txSecret=0a1b\\u0026txTime=1"}',
            '{"u":"rtmp:\\/\\/h?txSecret=<redacted>\\u0026txTime=1"}',
        ),
        (
            "pushURL=rtmp%3A%2F%2Fh%2Flive%2Fs%3Fbizid%3D1%26txSecret%3D0a1b2c%26txTime%3D5F",
            "pushURL=rtmp%3A%2F%2Fh%2Flive%2Fs%3Fbizid%3D1%26txSecret%3D<redacted>%26txTime%3D5F",
        ),
        (
            "u=rtmp%253A%252F%252Fh%253Fa%253D1%2526txSecret%253D0a1b%2526b%253D2",
            "u=rtmp%253A%252F%252Fh%253Fa%253D1%2526txSecret%253D<redacted>%2526b%253D2",
        ),
        ('{"userSig": "eJy\\"quoted\\"rest", "userID":"u"}', '{"userSig":"<redacted>", "userID":"u"}'),
        (
            '{"TOKEN":"t","TxSecret":"s","usersig":"x"}',
            '{"TOKEN":"<redacted>","TxSecret":"<redacted>","usersig":"<redacted>"}',
        ),
        ('{"secret_key":"k","accessToken" : "a"}', '{"secret_key":"<redacted>","accessToken":"<redacted>"}'),
        ('{"userID":"u","roomInfo":"no secrets here"}', '{"userID":"u","roomInfo":"no secrets here"}'),
    ],
)
def test_secrets_are_redacted_in_queries_forms_and_json(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        (  # the query of a request the server answers 0
            "userID=u&t%6Fken=1796050580.024345e7.dEHQ",
            "userID=u&token=<redacted>",
        ),
        ("userID=u&%75serSig=eJy-sig", "userID=u&userSig=<redacted>"),
        ("userID=u&user%53ig=eJy-sig", "userID=u&userSig=<redacted>"),  # a form body
        ('{"userID":"u","user\\u0053ig":"eJy-sig"}', '{"userID":"u","userSig":"<redacted>"}'),
        (
            '{"pushURL":"rtmp://h/live/0_u?bizid=0&txSecret\\u003dSECRET&txTime=1"}',
            '{"pushURL":"rtmp://h/live/0_u?bizid=0&txSecret=<redacted>&txTime=1"}',
        ),
        ("userIDPrefix=weixin&c%256Fde=0a1b", "userIDPrefix=weixin&code=<redacted>"),  # encoded twice
    ],
)
def test_a_credential_spelled_with_escapes_is_logged_decoded_and_redacted(text: str, logged: str) -> None:
    assert redact(text) == DECODED + logged


@pytest.mark.parametrize(
    "text",
    [
        '{"userName":"\\u4e2d\\u6587","userAvatar":"https:\\/\\/a.test\\/a%20b.png"}',
        "userName=%E4%B8%AD&pushURL=rtmp%3A%2F%2Fh%2Fs%3FtxSecret%3D0a1b%26txTime%3D5F",
    ],
)
def test_escapes_without_a_hidden_credential_are_logged_as_they_came(text: str) -> None:
    assert redact(text) == text.replace("0a1b", "<redacted>")


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        (
            "/weapp/multi_room/get_room_list?userID=u&t%6Fken=T0KEN",
            f"{DECODED}/weapp/multi_room/get_room_list?userID=u&token=<redacted>",
        ),
        (  # a credential in the path of a request built wrongly (answered 404) is redacted as well
            "/weapp/multi_room/get_room_list&userID=u1&token=PATHTOKEN1",
            "/weapp/multi_room/get_room_list&userID=u1&token=<redacted>",
        ),
        ("/weapp/utils/get_login_info;userSig=PATHSIG2", "/weapp/utils/get_login_info;userSig=<redacted>"),
    ],
)
def test_a_request_line_redacts_its_whole_target(target: str, logged: str) -> None:
    line = request_line(method="POST", target=target, client="127.0.0.1", body="{}", status=200, code=0, seconds=0)
    assert line.startswith(f"POST {logged} ip=127.0.0.1 body={{}}")


def test_redaction_stays_linear_on_hostile_bodies() -> None:
    for hostile in ("token" * 13000 + "=", '"' + "secret" * 11000 + '"', '"token":"' + 'a\\"' * 20000):
        assert redact(hostile)  # each would take minutes with a backtracking pattern


def test_a_request_line_is_redacted_before_the_body_is_cut() -> None:
    padding = "x" * (MAX_LOGGED_BODY_CHARS - 30)  # the userSig value starts 9 characters before the cut
    body = f'{{"pad":"{padding}","userSig":"SIG-SPANNING-THE-CUT-{"s" * 40}","pushURL":"{PUSH_URL}"}}'
    line = request_line(
        method="POST",
        target="/weapp/multi_room/add_pusher?token=T0KEN",
        client="127.0.0.1",
        body=body,
        status=200,
        code=0,
        seconds=0.001,
    )
    assert "T0KEN" not in line and "SIG-SPANNING" not in line and "0a1b2c3d4e5f" not in line
    assert "token=<redacted>" in line and '"userSig":"<redacted' in line


# --- the rotating file sink ------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _sink(directory: Path, clock: FakeClock, **overrides: Any) -> RotatingFile:
    options: dict[str, Any] = {
        "rotation": HOUR,
        "retention": 7 * DAY,
        "max_total_bytes": 1 << 20,
        "clock": clock,
        "dropped": DroppedWrites(),
        "notices": io.StringIO(),
    }
    return RotatingFile(directory, "response", **{**options, **overrides})


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_files_rotate_when_the_rotation_period_elapses(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 59, 59))
    sink = _sink(tmp_path, clock)
    sink.write("first\n")
    clock.now = datetime(2026, 11, 30, 2, 0, 0)
    sink.write("second\n")
    clock.now = datetime(2026, 11, 30, 2, 59, 0)
    sink.write("third\n")
    assert _names(tmp_path) == ["response-2026-11-30-01.log", "response-2026-11-30-02.log"]
    assert (tmp_path / "response-2026-11-30-02.log").read_text() == "second\nthird\n"


def test_a_rotation_shorter_than_an_hour_numbers_the_files_of_the_hour(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 10))
    sink = _sink(tmp_path, clock, rotation=parse_duration("30 minutes"))
    for minute in (10, 29, 30, 59):
        clock.now = datetime(2026, 11, 30, 1, minute)
        sink.write(f"at {minute}\n")
    clock.now = datetime(2026, 11, 30, 2, 5)
    sink.write("at 2:05\n")
    assert _names(tmp_path) == [
        "response-2026-11-30-01.1.log",
        "response-2026-11-30-01.log",
        "response-2026-11-30-02.log",
    ]
    assert (tmp_path / "response-2026-11-30-01.log").read_text() == "at 10\nat 29\n"
    assert (tmp_path / "response-2026-11-30-01.1.log").read_text() == "at 30\nat 59\n"


def test_a_restart_within_the_hour_appends_to_the_hour_s_file(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 10))
    _sink(tmp_path, clock).write("before\n")
    _sink(tmp_path, clock).write("after\n")
    assert (tmp_path / "response-2026-11-30-01.log").read_text() == "before\nafter\n"


def test_a_write_that_would_pass_the_file_s_share_of_the_budget_goes_to_a_numbered_file(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 0))
    sink = _sink(tmp_path, clock, max_total_bytes=8 * 100)  # 100 bytes a file
    line = "x" * 29 + "\n"
    for _ in range(7):
        sink.write(line)
    sink.write("y" * 150 + "\n")  # larger than a file's share: it gets a file of its own
    names = [f"response-2026-11-30-01{part}.log" for part in ("", ".1", ".2", ".3")]
    assert _names(tmp_path) == sorted(names)
    assert [(tmp_path / name).stat().st_size for name in names] == [90, 90, 30, 151]
    assert all(SAFE_FILE_NAME.match(name) for name in names)


def test_a_batch_larger_than_a_file_is_cut_into_whole_lines_and_stays_within_the_budget(tmp_path: Path) -> None:
    budget = 8_000  # a file may hold 1,000 bytes
    sink = _sink(tmp_path, FakeClock(datetime(2026, 11, 30, 1, 0)), max_total_bytes=budget)
    lines = [f"request {i:05d} " + "x" * 80 + "\n" for i in range(300)]  # 30,000 bytes
    for start in range(0, 300, 100):
        sink.write("".join(lines[start : start + 100]))  # each batch is ten files' worth
    sizes = [path.stat().st_size for path in tmp_path.iterdir()]
    assert max(sizes) <= budget // 8 and sum(sizes) <= budget, sizes
    kept = "".join(path.read_text() for path in sorted(tmp_path.iterdir(), key=lambda p: p.stat().st_mtime_ns))
    assert kept.endswith(lines[-1]) and all(line + "\n" in lines for line in kept.splitlines())


def _make_file(directory: Path, name: str, size: int, modified: datetime) -> Path:
    path = directory / name
    path.write_bytes(b"o" * (size - 1) + b"\n")
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


def test_files_older_than_retention_are_deleted_and_other_files_kept(tmp_path: Path) -> None:
    now = datetime(2026, 11, 30, 12, 0)
    _make_file(tmp_path, "response-2026-11-20-10.log", 10, now - 10 * DAY)
    _make_file(tmp_path, "response-2026-11-22-11.3.log", 10, now - 7 * DAY - timedelta(minutes=1))
    _make_file(tmp_path, "response-2026-11-23-13.log", 10, now - 7 * DAY + timedelta(minutes=1))
    _make_file(tmp_path, "notes.txt", 10, now - 30 * DAY)
    _make_file(tmp_path, "error-2026-11-20-10.log", 10, now - 30 * DAY)  # another sink's
    _sink(tmp_path, FakeClock(now)).write("now\n")
    assert _names(tmp_path) == [
        "error-2026-11-20-10.log",
        "notes.txt",
        "response-2026-11-23-13.log",
        "response-2026-11-30-12.log",
    ]


def test_the_oldest_files_are_deleted_while_the_kind_exceeds_its_budget(tmp_path: Path) -> None:
    now = datetime(2026, 11, 30, 12, 0)
    names = [
        "response-2026-11-30-05.log",
        "response-2026-11-30-05.1.log",
        "response-2026-11-30-05.2.log",
        "response-2026-11-30-05.10.log",  # numbered parts are ordered by number, not by text
        "response-2026-11-30-06.log",
        "response-2026-11-30-07.log",
        "response-2026-11-30-08.log",
        "response-2026-11-30-09.log",
        "response-2026-11-30-10.log",
        "response-2026-11-30-11.log",
    ]
    for name in names:
        _make_file(tmp_path, name, 100, now)
    # a budget of 1000: 125 bytes are kept for the new file, so at most 8 old ones of 100 stay
    _sink(tmp_path, FakeClock(now), max_total_bytes=1000).write("now\n")
    assert _names(tmp_path) == sorted([*names[2:], "response-2026-11-30-12.log"])


def test_many_writes_never_exceed_the_budget(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 0))
    sink = _sink(tmp_path, clock, max_total_bytes=4000)
    line = "y" * 99 + "\n"
    for step in range(400):
        clock.now += timedelta(minutes=1)
        sink.write(line)
        total = sum(p.stat().st_size for p in tmp_path.iterdir())
        assert total <= 4000, step
    assert len(list(tmp_path.iterdir())) > 1 and all(SAFE_FILE_NAME.match(n) for n in _names(tmp_path))


class FaultyDisk:
    """An opener: a real file, or /dev/full (every write fails with ENOSPC) while `full`."""

    def __init__(self) -> None:
        self.full = False

    def __call__(self, path: Path) -> BinaryIO:
        return open("/dev/full", "ab", buffering=0) if self.full else open_for_append(path)


def test_a_full_disk_drops_and_counts_writes_and_writing_resumes_when_space_returns(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 0))
    disk, dropped, notices = FaultyDisk(), DroppedWrites(), io.StringIO()
    sink = _sink(tmp_path, clock, opener=disk, dropped=dropped, notices=notices)
    sink.write("before\n")
    disk.full = True
    sink.stop()  # the file is opened again: now on the full disk
    sink.write("lost secret-content 1\n")
    sink.write("lost secret-content 2\n")
    assert dropped.count == 2
    disk.full = False
    sink.write("after\n")
    assert (tmp_path / "response-2026-11-30-01.log").read_text() == "before\nafter\n"
    assert dropped.count == 2
    said = notices.getvalue()
    assert "cannot write response log file" in said and "ENOSPC" in said and "again; 2 write(s) were dropped" in said
    assert "secret-content" not in said


class OutOfDescriptors:
    """An opener: a real file, or EMFILE (the process has no descriptor left) while `exhausted`."""

    def __init__(self) -> None:
        self.exhausted = False
        self.opened: list[str] = []

    def __call__(self, path: Path) -> BinaryIO:
        if self.exhausted:
            raise OSError(errno.EMFILE, "Too many open files")
        self.opened.append(path.name)
        return open_for_append(path)


def test_the_current_file_is_opened_at_start_so_lines_are_written_while_descriptors_are_exhausted(
    tmp_path: Path,
) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 0))
    opener, dropped = OutOfDescriptors(), DroppedWrites()
    sink = _sink(tmp_path, clock, opener=opener, dropped=dropped)
    assert opener.opened == ["response-2026-11-30-01.log"]  # before any line was written
    opener.exhausted = True
    sink.write("cannot accept connections: EMFILE\n")
    assert (tmp_path / "response-2026-11-30-01.log").read_text() == "cannot accept connections: EMFILE\n"
    assert dropped.count == 0


def test_a_rotation_without_a_descriptor_keeps_writing_to_the_current_file_until_it_has_one(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 59))
    opener, dropped, notices = OutOfDescriptors(), DroppedWrites(), io.StringIO()
    sink = _sink(tmp_path, clock, opener=opener, dropped=dropped, notices=notices, max_total_bytes=8 * 100)
    sink.write("a" * 59 + "\n")
    opener.exhausted = True
    clock.now = datetime(2026, 11, 30, 2, 0)  # time to rotate ...
    sink.write("b" * 59 + "\n")  # ... and past the file's 100 bytes too
    sink.write("c" * 59 + "\n")
    assert _names(tmp_path) == ["response-2026-11-30-01.log"]
    opener.exhausted = False
    sink.write("d" * 59 + "\n")  # a descriptor again: the rotation happens
    assert _names(tmp_path) == ["response-2026-11-30-01.log", "response-2026-11-30-02.log"]
    assert (tmp_path / "response-2026-11-30-01.log").read_text() == "".join(c * 59 + "\n" for c in "abc")
    assert (tmp_path / "response-2026-11-30-02.log").read_text() == "d" * 59 + "\n"
    assert dropped.count == 0 and notices.getvalue() == ""


class HalfThenEfbig:
    """A file that takes half of the first write, then refuses the rest: RLIMIT_FSIZE reached
    mid-line."""

    def __init__(self, path: Path) -> None:
        self._file = open_for_append(path)
        self._full = False

    def write(self, data: bytes) -> int:
        if self._full:
            raise OSError(errno.EFBIG, "File too large")
        self._full = True
        return self._file.write(bytes(data[: len(data) // 2])) or 0

    def close(self) -> None:
        self._file.close()


def test_a_write_cut_in_half_does_not_glue_the_next_line_to_it(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 1, 0))
    broken = [True]
    dropped = DroppedWrites()

    def opener(path: Path) -> BinaryIO:
        return HalfThenEfbig(path) if broken[0] else open_for_append(path)  # type: ignore[return-value]

    sink = _sink(tmp_path, clock, opener=opener, dropped=dropped)
    sink.write("abcd\n")  # "ab" is written, then the rest fails
    assert dropped.count == 1
    broken[0] = False
    sink.write("next\n")
    assert (tmp_path / "response-2026-11-30-01.log").read_text().splitlines() == ["ab", "next"]


def test_a_vanished_or_blocked_directory_is_survived_and_recreated(tmp_path: Path) -> None:
    directory = tmp_path / "response"
    clock = FakeClock(datetime(2026, 11, 30, 1, 0))
    dropped = DroppedWrites()
    sink = _sink(directory, clock, dropped=dropped)
    sink.write("one\n")
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    directory.write_text("a file where the directory was")  # even root cannot create files in it
    clock.now += HOUR
    sink.write("two\n")
    assert dropped.count == 1
    directory.unlink()
    sink.write("three\n")
    assert (directory / "response-2026-11-30-02.log").read_text() == "three\n"
    assert dropped.count == 1


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_failing_console_is_counted_and_reported_by_the_metric() -> None:
    registry = CollectorRegistry()
    registry.register(LogWritesCollector())
    before = DROPPED_WRITES.count
    Console(BrokenStream()).write("a line\n")
    assert DROPPED_WRITES.count == before + 1
    assert f"roomd_log_writes_dropped_total {before + 1:.1f}" in generate_latest(registry).decode()


# --- durations and their validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1 hour", 3600),
        ("30 minutes", 1800),
        ("2 days", 172800),
        ("90 seconds", 90),
        ("1 week", 604800),
        ("1.5 hours", 5400),
        ("10s", 10),
        ("7 DAYS", 604800),
        (" 1 min ", 60),
    ],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["x", "", "1", "hour", "0 hours", "-1 hour", "0.5 seconds", "1 fortnight", "500 MB", "00:00", "9" * 20 + " weeks"],
)
def test_non_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("key", ["rotation", "retention"])
def test_a_bad_rotation_or_retention_stops_the_start_with_one_line(key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={f"ROOMD_LOG__{key.upper()}": "x"})
    assert str(raised.value) == f"log.{key}: expected a duration like '1 hour' or '30 minutes', got 'x'"
    assert load_settings(environ={f"ROOMD_LOG__{key.upper()}": "2 days"}).log.__getattribute__(key) == "2 days"


def test_no_object_holding_a_key_shows_it_in_its_repr() -> None:
    import dataclasses

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from roomd.auth.signers import choose_user_signer, live_signer
    from roomd.auth.tokens import TokenBook
    from roomd.config import Settings
    from roomd.qcloud.usersig import EcdsaUserSigner

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    base = Settings()
    settings = dataclasses.replace(
        base,
        live=dataclasses.replace(base.live, push_secret_key="push-KEY-1"),
        im=dataclasses.replace(base.im, secret_key="im-KEY-2", private_key=pem),
        wechat=dataclasses.replace(base.wechat, app_secret="wx-KEY-3"),
        auth=dataclasses.replace(base.auth, token_secret="token-KEY-4", admin_key="admin-KEY-5"),
    )
    shown = [
        repr(settings),
        str(settings),
        repr(choose_user_signer(settings.im)),
        repr(EcdsaUserSigner.from_pem(1, "0", private_pem=pem)),
        repr(live_signer(settings.live)),
        repr(TokenBook(b"token-KEY-4", ttl=60)),
    ]
    for text in shown:
        for key in ("push-KEY-1", "im-KEY-2", "wx-KEY-3", "token-KEY-4", "admin-KEY-5", "PRIVATE KEY", pem[40:80]):
            assert key not in text, (key, text[:200])


@pytest.mark.parametrize(
    "text",
    ["a=1&\u017fecret=x", "to\u212aen=abc", '{"users\u0131g":"v"}', "TXSECRET=1", '{"userSig":"a\\"b"}'],
)
def test_the_quick_check_before_redaction_misses_no_spelling_the_patterns_match(text: str) -> None:
    from roomd.web.request_log import redact

    assert "<redacted>" in redact(text)


def test_the_one_time_wechat_code_is_redacted_and_fields_that_only_end_in_code_are_not() -> None:
    assert redact("/weapp/utils/get_login_info?userIDPrefix=weixin&code=0a1b2c") == (
        "/weapp/utils/get_login_info?userIDPrefix=weixin&code=<redacted>"
    )
    assert redact('{"code":"0a1b","errcode":"x","zipCode":"y"}') == '{"code":"<redacted>","errcode":"x","zipCode":"y"}'
