"""What a room endpoint's handler gets: the kind, the checked parameters, the deadline, the router."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from roomd.actors.router import RoomRouter
from roomd.web.context import AppContext
from roomd.web.envelope import Reply
from roomd.web.validation import Params


@dataclass(frozen=True, slots=True)
class RoomCall:
    """A room route's request, checked for who is calling: its kind, parameters and deadline."""

    kind: str
    params: Params
    deadline: float
    router: RoomRouter


Handler = Callable[[AppContext, RoomCall], Awaitable[Reply]]
