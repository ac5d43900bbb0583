"""What every route needs: settings, the actor system, the signers, the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from quart import current_app

from roomd.actors.system import RoomSystem
from roomd.config import Settings
from roomd.qcloud.live import LiveSigner
from roomd.qcloud.usersig import UserSigner


@dataclass
class Edge:
    settings: Settings
    system: RoomSystem
    user_signer: UserSigner
    live: LiveSigner
    wall_clock: Callable[[], float] = field(default=time.time)
    draining: bool = False

    def now(self) -> int:
        """Wall-clock seconds, for protocols that need them (txTime, UserSig)."""
        return int(self.wall_clock())

    def user_sig(self, user_id: str) -> str:
        return self.user_signer.make(
            user_id, now=self.now(), expire=self.settings.im.usersig_expire
        )


def current_edge() -> Edge:
    edge: Edge = current_app.extensions["roomd"]
    return edge
