"""The file-size limit of a live process: how end-to-end tests make its disk "full" and free it again.

A limit set with prlimit from outside takes effect at once: every write past
it fails with EFBIG (Python ignores SIGXFSZ), as a full disk would fail it.
"""

from __future__ import annotations

import resource


def set_file_size_limit(pid: int, limit: int) -> None:
    """Process `pid` may write files up to `limit` bytes (resource.RLIM_INFINITY: any size) from now on."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))
