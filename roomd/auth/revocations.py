"""Revoked login tokens: kept in memory and appended, durably, to `server.data_dir/revoked_tokens`.

A logout must survive a crash, so its reply waits for its line to be on
disk; one fsync per logout would make a burst of logouts queue behind the
disk, so concurrent logouts share one (group commit). The file is one
`<token id> <expires>` line per revocation, and a logout appends its line.
The file is rewritten only to drop the lines of tokens that have expired
(compaction): by the first write after a start that found expired,
repeated or broken lines in it (a crash may have cut the last line short,
and an append must not be glued to it), and when it holds many more lines
than live revocations. Every write, fsync and
rewrite runs on a worker thread, never on the trio thread; only the file's
read at start runs where the log is made, before the server listens.

A write that fails (a full disk) leaves its revocations in memory only:
the logout answers so, and its client cannot log out again (the token is
already refused). So the lines of failed writes are not left to the next
logout: `keep_written` tries them again every `RETRY_INTERVAL` until they
are on disk, and once more when the server stops.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from loguru import logger

from roomd.auth.secret_file import SecretFileError
from roomd.durable_files import append_durably, replace_durably

REVOKED_FILE = "revoked_tokens"
COMPACT_MIN_LINES = 4096
COMPACT_RATIO = 2  # compact once the file holds this many lines per live revocation
# token ids: 64 hex (the MAC), or 32 hex (a digest of the token text, written by earlier versions)
_LINE = re.compile(r"([0-9a-f]{64}|[0-9a-f]{32}) ([1-9][0-9]{0,11})")
LEGACY_ID_CHARS = 32
RETRY_INTERVAL = 1.0  # seconds between tries of the lines of a failed write
STOP_WRITE_TIMEOUT = 5.0  # seconds the stop waits for its try of them (behind a write already running)

log = logger.bind(actor="auth")


class RevocationNotDurable(Exception):
    """The revocation holds in memory, but its line could not be written to disk."""


@dataclass
class _Batch:
    lines: list[str] = field(default_factory=list)
    written: bool = False
    error: OSError | None = None


class RetryWake:
    """Whether some writes wait to be tried again: what `keep_retrying` sleeps on."""

    def __init__(self) -> None:
        self._some = trio.Event()

    def waiting(self, some: bool) -> None:
        if some:
            self._some.set()
        elif self._some.is_set():
            self._some = trio.Event()

    async def wait(self) -> None:
        await self._some.wait()


async def keep_retrying(
    wake: RetryWake, retry: Callable[[], Awaitable[object]], *, interval: float, stop_timeout: float = math.inf
) -> None:
    """Run until cancelled: while `wake` says some writes wait, call `retry` every `interval` seconds.
    Cancelled (the server stopping), call it once more, shielded, for at most `stop_timeout` seconds;
    `retry` returns at once when nothing waits. Logouts kept in a file and in Redis both retry so."""
    try:
        while True:
            await wake.wait()
            await trio.sleep(interval)
            await retry()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(stop_timeout):
            await retry()


class RevocationLog:
    def __init__(self, path: Path | None, *, now: int, compact_min_lines: int = COMPACT_MIN_LINES) -> None:
        self._path = path
        self._compact_min_lines = compact_min_lines
        self._live: dict[str, int] = {}  # token id -> expires
        self._expiry: list[tuple[int, str]] = []  # heap of (expires, token id), to forget expired ids
        self._file_lines = 0
        self._retry_compaction_at = 0
        self._compact_first = False  # the file read at start held expired, repeated or broken lines
        self._ends_mid_line = False  # ... and its last line was cut short: an append must not be glued to it
        self._open = _Batch()  # lines waiting for the next write
        self._unwritten: list[str] = []  # lines of failed writes, retried with the next write or retry
        self._retries = RetryWake()  # wakes keep_written while there are some
        self._write_lock = trio.Lock()
        self.has_legacy_ids = False
        if path is not None:
            self._load(path, now)

    def __contains__(self, token_id: str) -> bool:
        return token_id in self._live

    async def add(self, token_id: str, expires: int, *, now: int) -> None:
        """Revoke `token_id` until `expires`, at once in memory; return once that is on disk.

        RevocationNotDurable if the write fails: the token stays revoked in
        memory and its line is retried with the next write, or by `keep_written`.
        """
        self._forget_expired(now)
        self._remember(token_id, expires)
        if self._path is None:
            return
        batch = self._open
        batch.lines.append(f"{token_id} {expires}\n")
        async with self._write_lock:  # fair: batches are written in the order they were opened
            if not batch.written:
                if self._open is batch:
                    self._open = _Batch()  # later logouts gather in the next batch meanwhile
                await self._write(batch, now)
        if batch.error is not None:
            raise RevocationNotDurable(f"the logout could not be written to {self._path} ({batch.error.strerror})")

    async def keep_written(self, clock: Callable[[], float]) -> None:
        """Run until cancelled: try the lines of failed writes every RETRY_INTERVAL seconds until
        they are on disk. Cancelled (the server stopping), try them once more, waiting at most
        STOP_WRITE_TIMEOUT seconds for a write already running. `clock`: wall-clock seconds."""
        await keep_retrying(
            self._retries,
            lambda: self.write_unwritten(now=int(clock())),
            interval=RETRY_INTERVAL,
            stop_timeout=STOP_WRITE_TIMEOUT,
        )

    async def write_unwritten(self, *, now: int) -> bool:
        """Try once to write the lines of failed writes; True when none is left unwritten."""
        if not self._unwritten:
            return True
        async with self._write_lock:
            if self._unwritten:  # or a logout's write took them meanwhile
                await self._write(_Batch(), now)
        return not self._unwritten

    def _remember(self, token_id: str, expires: int) -> None:
        self._live[token_id] = expires
        heapq.heappush(self._expiry, (expires, token_id))
        if len(token_id) == LEGACY_ID_CHARS:
            self.has_legacy_ids = True

    def _forget_expired(self, now: int) -> None:
        while self._expiry and self._expiry[0][0] < now:
            expires, token_id = heapq.heappop(self._expiry)
            if self._live.get(token_id) == expires:
                del self._live[token_id]

    async def _write(self, batch: _Batch, now: int) -> None:
        """Append `batch` and the lines of failed writes (those of tokens still live); `batch` empty:
        a retry of those alone."""
        assert self._path is not None
        retried = [line for line in self._unwritten if int(line.split()[1]) >= now]
        lines = retried + batch.lines
        if not lines:  # a retry of revocations that have all expired meanwhile
            self._keep_unwritten([])
            batch.written = True
            return
        try:
            # a compaction holds every live revocation, those of `lines` included
            if not (self._compact_first and await self._compact(now)):
                data = ("\n" if self._ends_mid_line else "") + "".join(lines)
                await trio.to_thread.run_sync(append_durably, self._path, data.encode("ascii"))
                self._ends_mid_line = False
                self._file_lines += len(lines)
        except OSError as e:
            batch.error = e
            self._keep_unwritten(lines)
            if batch.lines:
                log.error(
                    "could not write {} revocation(s) to {}: {}; trying again every {:g} s until written",
                    len(lines),
                    self._path,
                    e,
                    RETRY_INTERVAL,
                )
            else:
                log.debug("could not write {} revocation(s) to {} yet: {}", len(lines), self._path, e)
        except BaseException:
            self._keep_unwritten(lines)  # cancelled before the thread ran: whoever writes next takes them
            raise
        else:
            if retried:
                log.info("wrote {} revocation(s) to {} that an earlier write could not", len(retried), self._path)
            self._keep_unwritten([])
        batch.written = True
        if batch.error is None and self._needs_compaction(now):
            await self._compact(now)

    def _keep_unwritten(self, lines: list[str]) -> None:
        self._unwritten = lines
        self._retries.waiting(bool(lines))

    def _needs_compaction(self, now: int) -> bool:
        self._forget_expired(now)
        threshold = max(self._compact_min_lines, COMPACT_RATIO * len(self._live), self._retry_compaction_at)
        return self._file_lines >= threshold

    async def _compact(self, now: int) -> bool:
        """Rewrite the file with the live revocations only, on a worker thread; False if that failed
        (the file is then as it was, and keeps growing until the next try)."""
        assert self._path is not None
        self._compact_first = False
        self._forget_expired(now)
        entries = list(self._live.items())  # taken on the trio thread: logouts keep changing the dict meanwhile
        try:
            await trio.to_thread.run_sync(_replace_with, self._path, entries)
        except OSError as e:
            self._retry_compaction_at = 2 * self._file_lines
            log.warning("could not compact {}: {}; it keeps growing until the next try", self._path, e)
            return False
        self._file_lines = len(entries)
        self._ends_mid_line = False
        self._retry_compaction_at = 0
        return True

    def _load(self, path: Path, now: int) -> None:
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return
        except OSError as e:
            raise OSError(
                e.errno, f"cannot read the revoked tokens in {path}: {e.strerror}; fix its permissions"
            ) from None
        lines = text.splitlines()
        unreadable = 0
        for number, line in enumerate(lines, 1):
            match = _LINE.fullmatch(line.strip())
            if match is None:
                last_cut_short = number == len(lines) and not text.endswith("\n")  # by a crash: expected
                unreadable += 0 if last_cut_short or not line.strip() else 1
            elif int(match[2]) >= now:
                self._remember(match[1], int(match[2]))
        if unreadable:
            log.warning(
                "{} of {} lines in {} are not revocations roomd wrote and are dropped: any logout they "
                "recorded no longer holds",
                unreadable,
                len(lines),
                path,
            )
        self._file_lines = len(lines)
        self._ends_mid_line = bool(text) and not text.endswith("\n")
        self._compact_first = self._ends_mid_line or self._file_lines != len(self._live)


def _replace_with(path: Path, entries: list[tuple[str, int]]) -> None:
    replace_durably(path, "".join(f"{token_id} {expires}\n" for token_id, expires in entries).encode("ascii"))


def check_revocations_readable(path: Path) -> None:
    """Return when `path` is missing or a readable file; a SecretFileError (stopping the start with one
    line) otherwise: without it, logouts could neither be kept nor written."""
    try:
        if not path.exists():
            return
        if not path.is_file():  # a directory, or a FIFO that would block the start
            raise SecretFileError(f"{path} should hold the revoked tokens but is not a regular file; remove it")
        with path.open("rb"):
            pass
    except OSError as e:
        raise SecretFileError(f"cannot read the revoked tokens in {path}: {e.strerror}; fix or remove it") from None
