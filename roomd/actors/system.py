"""The root of the actor tree: starts the IM actor and one directory per kind, stops them.

    async with open_room_system(settings) as system:
        directory = system.directory("multi_room")

Leaving the block stops every directory; their rooms close with reason
`shutdown` and the block returns when every actor has ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from loguru import logger

from roomd.actors.directory import Directory
from roomd.actors.im import SkippedIm
from roomd.actors.ports import ImPort
from roomd.config import Settings

ROOT = "root"


@dataclass
class RoomSystem:
    directories: dict[str, Directory]
    im: ImPort

    def directory(self, kind: str) -> Directory | None:
        return self.directories.get(kind)


@asynccontextmanager
async def open_room_system(
    settings: Settings, *, im: ImPort | None = None
) -> AsyncIterator[RoomSystem]:
    log = logger.bind(actor=ROOT)
    async with trio.open_nursery() as nursery:
        im_actor = im if im is not None else SkippedIm(f"{ROOT}/im")
        directories: dict[str, Directory] = {}
        for name, kind in settings.kinds.items():
            directory = Directory(
                kind_name=name,
                kind=kind,
                im=im_actor,
                mailbox_size=settings.server.mailbox_size,
                call_timeout=settings.server.call_timeout,
                path=f"{ROOT}/{name}",
            )
            await nursery.start(directory.run)
            directories[name] = directory
        log.info("actor system started kinds={}", ",".join(directories))
        try:
            yield RoomSystem(directories=directories, im=im_actor)
        finally:
            log.info("actor system stopping")
            for directory in directories.values():
                directory.stop()
    log.info("actor system stopped")
