"""A slow or stalled log sink costs log lines, never request latency.

Every sink roomd configures writes on a thread of its own behind a bounded
queue (roomd/logs/background.py): while the console and the log files are
stuck in a write, heartbeats are still answered; when the queue is full a
line is dropped and counted instead of making the logger wait; and a stop
writes every queued line first.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from loguru import logger

from roomd.config import LogSettings
from roomd.logs.background import RECORD_OVERHEAD, BackgroundSink
from roomd.logs.files import DroppedWrites, RotatingFile
from roomd.logs.setup import configure_logging, flush_logs
from tests.bodies import member_fields
from tests.conftest import Api

HEARTBEATS = 50
SAFETY_NET = 30.0  # seconds: only a broken build waits this long for a sink thread


class Gate:
    """Holds every write that reaches it until `release()`; records what entered and what got through."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        self._lock = threading.Lock()
        self.passed = 0

    def hold(self) -> None:
        self.entered.set()
        if not self._open.wait(SAFETY_NET):
            self._open.set()  # a write held on the trio thread would hang the test: let all go, and fail it
        with self._lock:
            self.passed += 1

    def release(self) -> None:
        self._open.set()

    @property
    def released(self) -> bool:
        return self._open.is_set()


class GatedStream(io.StringIO):
    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self._gate = gate

    def write(self, text: str) -> int:
        self._gate.hold()
        return super().write(text)


class GatedTarget:
    """A sink's target that keeps what it is given, once the gate lets it through."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self.lines: list[str] = []
        self.stopped = False

    def write(self, message: str) -> None:
        self._gate.hold()
        self.lines.append(message)

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def stalled_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """roomd's own logging, configured into tmp_path, with the console and every log file stuck
    in their first write until the gate is released."""
    gate = Gate()
    monkeypatch.setattr(sys, "stderr", GatedStream(gate))
    real_write = RotatingFile.write

    def gated_write(self: RotatingFile, message: str) -> None:
        gate.hold()
        real_write(self, message)

    monkeypatch.setattr(RotatingFile, "write", gated_write)
    configure_logging(LogSettings(dir=str(tmp_path)))
    try:
        yield gate
    finally:
        gate.release()
        logger.remove()
        logger.configure(patcher=lambda record: None, extra={})
        logger.add(sys.__stderr__)


async def test_heartbeats_are_answered_while_every_log_sink_is_stuck_in_a_write(
    api: Api, stalled_logs: Gate, tmp_path: Path
) -> None:
    created = await api.post("create_room", {**member_fields("alice"), "roomName": "r"})
    assert created.code == 0
    room_id = created.body["roomID"]
    # the create's log lines reached a sink thread, which is now stuck in the write
    assert await trio.to_thread.run_sync(stalled_logs.entered.wait, SAFETY_NET)
    for _ in range(HEARTBEATS):
        reply = await api.post("pusher_heartbeat", {"roomID": room_id, "userID": "alice"})
        assert reply.code == 0
    assert not stalled_logs.released and stalled_logs.passed == 0  # every heartbeat answered, no line written
    stalled_logs.release()
    assert await trio.to_thread.run_sync(flush_logs)
    response_text = "".join(path.read_text() for path in (tmp_path / "response").glob("response-*.log"))
    assert response_text.count("/weapp/multi_room/pusher_heartbeat") == HEARTBEATS  # queued, none lost


def test_a_full_queue_drops_and_counts_lines_instead_of_blocking() -> None:
    gate = Gate()
    target = GatedTarget(gate)
    dropped = DroppedWrites()
    notices = io.StringIO()
    line = "x" * (100 - RECORD_OVERHEAD - 1) + "\n"  # 100 bytes in the queue
    sink = BackgroundSink(target, name="test", max_pending_bytes=10 * 100, dropped=dropped, notices=notices)
    try:
        sink.write("first\n")
        assert gate.entered.wait(SAFETY_NET)  # the thread holds "first": the queue is empty again
        for _ in range(20):
            sink.write(line)  # returns at once, whether the line is queued or dropped
        assert dropped.count == 10 + 1  # room for 9 more lines of 100 bytes beside the one being written
        gate.release()
        assert sink.drain(SAFETY_NET)
        assert target.lines == ["first\n"] + [line] * 9
        sink.write("after the backlog\n")
        assert sink.drain(SAFETY_NET) and target.lines[-1] == "after the backlog\n" and dropped.count == 11
    finally:
        gate.release()
        sink.stop()
    assert "test log lines came faster than they could be written; 11 line(s) dropped" in notices.getvalue()


def test_a_line_larger_than_the_queue_still_gets_through_an_empty_queue() -> None:
    gate = Gate()
    gate.release()
    target = GatedTarget(gate)
    sink = BackgroundSink(target, name="test", max_pending_bytes=10, dropped=DroppedWrites())
    sink.write("a response batch far longer than the queue's bound\n")
    assert sink.drain(SAFETY_NET) and len(target.lines) == 1
    sink.stop()


def test_stop_writes_every_queued_line_then_stops_the_target() -> None:
    gate = Gate()
    target = GatedTarget(gate)
    sink = BackgroundSink(target, name="test", dropped=DroppedWrites())
    lines = [f"line {i}\n" for i in range(1000)]
    for line in lines:
        sink.write(line)
    assert not target.lines
    gate.release()
    sink.stop()
    assert target.lines == lines and target.stopped


def test_stop_gives_up_on_a_hung_target_and_leaves_it_open() -> None:
    gate = Gate()
    target = GatedTarget(gate)
    sink = BackgroundSink(target, name="test", dropped=DroppedWrites(), stop_timeout=0)
    sink.write("stuck\n")
    assert gate.entered.wait(SAFETY_NET)
    sink.stop()  # returns although the thread is still in the write
    assert not target.stopped and not sink.drain(0)
    gate.release()
    assert sink.drain(SAFETY_NET) and target.lines == ["stuck\n"]


def test_loguru_hands_each_record_to_the_queue_and_removing_the_sink_writes_it() -> None:
    gate = Gate()
    target = GatedTarget(gate)
    sink = BackgroundSink(target, name="test", dropped=DroppedWrites())
    handler = logger.add(sink, format="{message}", filter=lambda record: record["extra"].get("test") == "queued")
    queued = logger.bind(test="queued")
    for i in range(5):
        queued.info("record {}", i)  # the target is held: these return at once anyway
    assert not target.lines
    gate.release()
    logger.remove(handler)  # what loguru does at exit too
    assert target.lines == [f"record {i}\n" for i in range(5)] and target.stopped
