"""At most `server.max_connections_per_address` open connections from one client address.

Every open connection costs memory that outlives it: its tasks, cancel
scopes and protocol state are small objects, and Python keeps the arenas
they were allocated in after they are gone (about 20 KB per connection
held at once, see bench/never_reading.py). Bounding what one address may
hold open bounds that, and the descriptors one client can take from
others. A connection over the limit is reset at once, before it is read;
refusals are logged at most once a second, with how many were left out.
Behind a proxy every client has the proxy's address: raise the limit there
or switch it off (0). Switched off, nothing is counted; switched on, the
count starts from an empty table whenever the last connection goes (a
dict's table never shrinks: one that held 10,000 addresses would keep
their slots).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from loguru import logger

from roomd.client_address import limit_key

LOG_EVERY_SECONDS = 1.0
log = logger.bind(actor="http")


class ConnectionsPerAddress:
    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit  # 0: no limit
        self.refused = 0
        self._open: collections.Counter[str] = collections.Counter()
        self._clock = clock
        self._last_line = -LOG_EVERY_SECONDS
        self._unlogged = 0

    def admit(self, address: str) -> bool:
        """Count a new connection from `address`; False (and nothing counted) when it has too many."""
        if not self.limit:
            return True
        address = limit_key(address)
        if self._open[address] >= self.limit:
            self.refused += 1
            self._log_refusal(address)
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        if not self.limit:
            return
        address = limit_key(address)
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]
            if not self._open:
                self._open = collections.Counter()

    def open_from(self, address: str) -> int:
        return self._open.get(limit_key(address), 0)

    def _log_refusal(self, address: str) -> None:
        now = self._clock()
        if now - self._last_line < LOG_EVERY_SECONDS:
            self._unlogged += 1
            return
        also = f" ({self._unlogged} more refused since the last line)" if self._unlogged else ""
        log.warning(
            "refused a connection from {}: it has {} open, the most allowed (server.max_connections_per_address){}",
            address,
            self.limit,
            also,
        )
        self._last_line = now
        self._unlogged = 0
