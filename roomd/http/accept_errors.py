"""Running out of file descriptors costs one log line a second, not ten tracebacks.

When accept() fails for lack of descriptors or kernel memory (EMFILE, ENFILE,
ENOMEM, ENOBUFS), trio.serve_listeners logs the failure with its traceback
and retries every 0.1 s, for as long as it lasts. `PatientListener` retries
by itself instead, so serve_listeners never sees these errors;
`AcceptErrorLog` counts every failure and logs at most one line a second:
the first failure, then later ones with how many were left out, and — on the
first accept at least a second after the last of those lines — that
accepting works again. Connections already open are served as before
meanwhile; new ones wait in the listen backlog until a descriptor is free.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

import trio
from loguru import logger

CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
RETRY_SECONDS = 0.1
LOG_EVERY_SECONDS = 1.0

log = logger.bind(actor="http")


class AcceptErrorLog:
    def __init__(self, count: Callable[[], object], clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
        self._clock = clock
        self._last_line: float | None = None
        self._unlogged = 0
        self._since_last_success = 0

    def failed(self, error: OSError) -> None:
        self._count()
        self._since_last_success += 1
        now = self._clock()
        if self._last_line is not None and now - self._last_line < LOG_EVERY_SECONDS:
            self._unlogged += 1
            return
        left_out = f"; {self._unlogged} more failures since the last line" if self._unlogged else ""
        self._last_line, self._unlogged = now, 0
        log.error(
            "cannot accept connections: {} ({}); retrying every {:g} s, serving the open ones{}",
            errno.errorcode.get(error.errno or 0, error.errno),
            os.strerror(error.errno or 0),
            RETRY_SECONDS,
            left_out,
        )

    def accepted(self) -> None:
        if not self._since_last_success:
            return
        now = self._clock()
        if self._last_line is not None and now - self._last_line < LOG_EVERY_SECONDS:
            return  # one line a second at most, even if accept flaps; a later accept says it
        log.info("accepting connections again after {} failed attempts", self._since_last_success)
        self._last_line, self._since_last_success, self._unlogged = now, 0, 0


class PatientListener(trio.abc.Listener[trio.SocketStream]):
    def __init__(self, listener: trio.SocketListener, errors: AcceptErrorLog) -> None:
        self._listener = listener
        self._errors = errors

    async def accept(self) -> trio.SocketStream:
        while True:
            try:
                stream = await self._listener.accept()
            except OSError as error:
                if error.errno not in CAPACITY_ERRNOS:
                    raise
                self._errors.failed(error)
                await trio.sleep(RETRY_SECONDS)
            else:
                self._errors.accepted()
                return stream

    async def aclose(self) -> None:
        await self._listener.aclose()
