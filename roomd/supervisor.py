"""`roomd serve --workers N`: N cluster nodes on one machine, one public port, restarted when they die.

Each node is a process of its own (`roomd serve --node-index i`), so the
machine's cores all serve; each opens its own listening socket on the
public port with SO_REUSEPORT, and the kernel spreads connections over
them. Any node answers any request (the cluster router finds the room's
owner), so the spread needs no care. Nodes need Redis: N > 1 without
`cluster.redis_url` is a configuration error.

The supervisor holds the data_dir lock and makes the token secret before
starting nodes; a node that exits without being asked to is started again
after a pause that doubles while it keeps dying within a minute (1 s up to
30 s), except one that exits with status 2 (a configuration or a secret
that cannot work: starting it again cannot help), which stops every node
and then the supervisor, with status 2. SIGTERM, SIGINT or SIGHUP is passed
to every node, and the supervisor exits once they all have; a supervisor
that dies without passing it (SIGKILL) takes its nodes with it (Linux's
parent-death signal). Each node logs under `<log.dir>/node-<i>/`, the
supervisor under `<log.dir>`; log.max_bytes bounds all of these files
together, so the supervisor and each node keep log.max_bytes / (N + 1).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator

import trio
from loguru import logger

from roomd.config import ConfigError

RESTART_DELAY = 1.0  # seconds before a dead node starts again; doubles while it keeps dying
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0  # a node that ran this long before dying starts again after RESTART_DELAY
STOP_TIMEOUT = 60.0  # seconds nodes get to stop after SIGTERM before they are killed
# what stops roomd: SIGHUP too (its terminal went away), since roomd has nothing to reload
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
CANNOT_START = 2  # what roomd exits with when its settings or its data stop the start (cli.py too)
MIN_LOG_BYTES = 1 << 20  # the least log.max_bytes (config/loader.py): each process's share keeps it

log = logger.bind(actor="supervisor")


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A bound, not listening SO_REUSEPORT socket on `port` (0: a free one), held so that the port
    stays this server's; the nodes listen on the same port beside it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock, sock.getsockname()[1]


def log_share(max_bytes: int, workers: int) -> int:
    """The log.max_bytes of the supervisor and of each of its `workers` nodes: an equal share, so
    that all their log files together stay within `max_bytes`."""
    share = max_bytes // (workers + 1)
    if share < MIN_LOG_BYTES:
        raise ConfigError(
            f"log.max_bytes: must be at least {(workers + 1) * MIN_LOG_BYTES} with --workers {workers} "
            "(the supervisor and each node keep an equal share of it, at least 1 MiB each)"
        )
    return share


def node_command(argv: list[str], index: int, port: int, *, workers: int) -> list[str]:
    """The `roomd serve` command line of node `index`: the supervisor's own, less --workers, plus
    how many nodes share log.max_bytes."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--port"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--port=")):
            continue
        kept.append(arg)
    node = ["--port", str(port), "--node-index", str(index), "--node-count", str(workers)]
    return [sys.executable, "-m", "roomd.cli", *kept, *node]


async def supervise(serve_argv: list[str], *, workers: int, host: str, port: int) -> int:
    """Run the nodes until a signal stops them (0), or until one of them cannot start at all (2)."""
    reserved, port = reserve_port(host, port)
    log.info("supervisor starting workers={} listening on http://{}:{}", workers, host, port)
    stopping = trio.Event()
    cannot_start: list[int] = []  # nodes that exited with status 2
    try:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as watching:
                watching.start_soon(_watch_signals, signals, stopping)
                async with trio.open_nursery() as nodes:  # ends once every node has stopped
                    for index in range(workers):
                        command = node_command(serve_argv, index, port, workers=workers)
                        nodes.start_soon(_keep_running, command, index, stopping, cannot_start)
                watching.cancel_scope.cancel()
    finally:
        reserved.close()
    log.info("supervisor stopped")
    return CANNOT_START if cannot_start else 0


async def _watch_signals(signals: AsyncIterator[int], stopping: trio.Event) -> None:
    """The first signal stops every node; later ones are noted (the nodes are stopping already)."""
    async for signum in signals:
        if stopping.is_set():
            log.info("received {} again: the nodes are stopping already", signal.Signals(signum).name)
        else:
            log.info("received {}: stopping every node", signal.Signals(signum).name)
            stopping.set()


async def _stop_when_asked(process: trio.Process, index: int, stopping: trio.Event) -> None:
    await stopping.wait()
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_TIMEOUT):
        await process.wait()
    if process.returncode is None:
        log.warning("node {} pid={} did not stop within {:g} s; killing it", index, process.pid, STOP_TIMEOUT)
        process.kill()


async def _keep_running(command: list[str], index: int, stopping: trio.Event, cannot_start: list[int]) -> None:
    delay = RESTART_DELAY
    while not stopping.is_set():
        started = trio.current_time()
        process = await trio.lowlevel.open_process(command)
        log.info("node {} started pid={}", index, process.pid)
        async with trio.open_nursery() as watching:
            watching.start_soon(_stop_when_asked, process, index, stopping)
            status = await process.wait()
            watching.cancel_scope.cancel()
        if stopping.is_set():
            log.info("node {} stopped status={}", index, status)
            return
        if status == CANNOT_START:  # its settings or what it read at start (e.g. a secret in Redis): final
            log.error("node {} cannot start (status {}; its stderr says why); stopping every node", index, status)
            cannot_start.append(index)
            stopping.set()
            return
        delay = RESTART_DELAY if trio.current_time() - started >= STABLE_AFTER else delay
        log.warning("node {} pid={} exited status={}; starting it again in {:g} s", index, process.pid, status, delay)
        with trio.move_on_after(delay):
            await stopping.wait()
        delay = min(delay * 2, MAX_RESTART_DELAY)


def stop_with_the_supervisor() -> None:
    """Called first in a node: Linux sends it SIGTERM when its supervisor dies, however it dies
    (killed, crashed), so no node goes on serving the port and the data_dir without one."""
    supervisor = os.getppid()
    if supervisor == 1:  # gone already
        os.kill(os.getpid(), signal.SIGTERM)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: SIGTERM and SIGINT still reach every node
        return
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
