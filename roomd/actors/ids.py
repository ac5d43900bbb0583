"""Fresh identifiers: random, so they are unique across restarts and nodes."""

from __future__ import annotations

import secrets


def new_room_id() -> str:
    return f"room_{secrets.token_hex(6)}"


def new_user_id(prefix: str = "user") -> str:
    return f"{prefix}_{secrets.token_hex(6)}"
