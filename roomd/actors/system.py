"""The root of the actor tree: starts the IM actor and one directory per kind, stops them.

    async with open_room_system(settings) as system:
        await system.router.call_room("multi_room", room_id, Heartbeat(user_id), deadline=...)

Leaving the block stops every directory; their rooms close with reason
`shutdown` and the block returns when every actor has ended.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from loguru import logger

from roomd.actors.directory import Directory
from roomd.actors.im import ImActor, SkippedIm
from roomd.actors.ports import ChangeStore, ImPort
from roomd.actors.router import LocalRouter
from roomd.actors.store import NullStore, SqliteStore
from roomd.actors.webhooks import WebhookSender
from roomd.config import Settings
from roomd.qcloud.usersig import UserSigner

ROOT = "root"
STORE_FILE = "rooms.sqlite3"


@dataclass
class RoomSystem:
    directories: dict[str, Directory]
    im: ImPort
    store: ChangeStore = field(default_factory=NullStore)
    started_at: float = field(default_factory=trio.current_time)
    stopping: bool = False
    webhooks: WebhookSender | None = None
    router: LocalRouter = field(init=False)

    def __post_init__(self) -> None:
        self.router = LocalRouter(self.directories, im=self.im, store=self.store, webhooks=self.webhooks)

    def directory(self, kind: str) -> Directory | None:
        return self.directories.get(kind)

    async def describe(self, *, limit: int) -> dict[str, Any]:
        """The live actor tree as plain data, at most `limit` rooms per kind."""
        return {
            "path": ROOT,
            "kind": "root",
            "state": "stopping" if self.stopping else "running",
            "uptime": round(trio.current_time() - self.started_at, 3),
            "children": await self.router.describe(limit=limit),
        }


@asynccontextmanager
async def open_room_system(
    settings: Settings,
    *,
    user_signer: UserSigner | None = None,
    wall_clock: Callable[[], float] = time.time,
    store: ChangeStore | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[RoomSystem]:
    """Start the tree; IM calls need `user_signer` (for the admin UserSig) when IM is configured.
    `store`: where rooms record their changes when not the one `server.persist` chooses
    (cluster mode: Redis; its owner runs and stops it)."""
    log = logger.bind(actor=ROOT)
    async with trio.open_nursery() as root:
        im_actor: ImPort
        if settings.im.configured:
            if user_signer is None:
                raise ValueError("IM is configured: open_room_system needs the user_signer")
            im_actor = await root.start(
                ImActor(
                    settings.im,
                    user_signer,
                    path=f"{ROOT}/im",
                    wall_clock=wall_clock,
                    drain_timeout=settings.im.drain_timeout,
                ).run
            )
        else:
            im_actor = SkippedIm(f"{ROOT}/im")
        if store is None and settings.server.persist:
            path = Path(settings.server.data_dir) / STORE_FILE
            store = await root.start(SqliteStore(path, actor_path=f"{ROOT}/store").run)
        elif store is None:
            store = NullStore()
        webhooks: WebhookSender | None = None
        if settings.webhooks.enabled and isinstance(store, (SqliteStore, NullStore)):
            webhooks = WebhookSender(settings.webhooks, store, transport=webhook_transport)
            store.outbox.urls = settings.webhooks.urls
            store.outbox.on_saved = webhooks.accept
            if isinstance(store, SqliteStore):
                webhooks.accept(store.load_outbox())
            await root.start(webhooks.run)
        try:
            async with trio.open_nursery() as kinds:
                directories: dict[str, Directory] = {}
                for name, kind in settings.kinds.items():
                    directory = Directory(
                        kind_name=name,
                        kind=kind,
                        im=im_actor,
                        store=store,
                        mailbox_size=settings.server.mailbox_size,
                        call_timeout=settings.server.call_timeout,
                        path=f"{ROOT}/{name}",
                    )
                    directory.emit_events = settings.webhooks.enabled
                    await kinds.start(directory.run)
                    directories[name] = directory
                log.info("actor system started kinds={}", ",".join(directories))
                system = RoomSystem(directories=directories, im=im_actor, store=store, webhooks=webhooks)
                try:
                    yield system
                finally:
                    system.stopping = True
                    log.info("actor system stopping")
                    for directory in directories.values():
                        directory.stop()
        finally:
            if webhooks is not None:
                webhooks.stop()  # what is not delivered yet stays in the outbox for the next start
            if isinstance(store, SqliteStore):
                store.stop()
            if isinstance(im_actor, ImActor):
                im_actor.stop()
    log.info("actor system stopped")
