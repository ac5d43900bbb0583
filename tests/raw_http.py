"""HTTP/1.1 by hand over trio TCP streams, for tests that send what no client library would."""

from __future__ import annotations

import json
import resource
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def address(base_url: str) -> tuple[str, int]:
    url = urlsplit(base_url)
    return url.hostname or "127.0.0.1", url.port or 80


@dataclass
class RawReply:
    raw: bytes
    closed: bool  # the server closed the connection after it

    @property
    def head(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[0]

    @property
    def status(self) -> int:
        return int(self.raw.split(b" ", 2)[1])

    @property
    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}

    @property
    def body(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[1]

    def json(self) -> Any:
        return json.loads(self.body)


async def read_reply(stream: trio.abc.Stream, *, within: float = 10.0) -> RawReply:
    """Everything the server sends until it closes the connection or `within` seconds pass."""
    data = b""
    closed = False
    with trio.move_on_after(within):
        try:
            while chunk := await stream.receive_some(65536):
                data += chunk
            closed = True
        except STREAM_ERRORS:
            closed = True
    return RawReply(data, closed)


async def exchange(base_url: str, *pieces: bytes, pause: float = 0.0, within: float = 10.0) -> RawReply:
    """Send `pieces` on a fresh connection (`pause` seconds apart) and read until it closes."""
    stream = await trio.open_tcp_stream(*address(base_url))
    async with stream:
        for index, piece in enumerate(pieces):
            if index and pause:
                await trio.sleep(pause)
            await stream.send_all(piece)
        return await read_reply(stream, within=within)


def closed_by_peer(stream: trio.SocketStream) -> bool:
    """The server has closed or reset this connection, whether or not we read what it sent."""
    state = stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    return state in (_TCP_CLOSE, _TCP_CLOSE_WAIT)


_TCP_CLOSE, _TCP_CLOSE_WAIT = 7, 8  # tcpi_state, linux/tcp_states.h


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def raise_open_files_limit(wanted: int, pid: int = 0) -> None:
    """Lift the soft RLIMIT_NOFILE of `pid` (0: this process) to `wanted`, within the hard limit."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (target, hard))
