"""Request bodies the way RTCRoom clients send them, for HTTP tests."""

from __future__ import annotations

from typing import Any


def member_fields(user_id: str, **extra: Any) -> dict[str, Any]:
    """What a client says about itself when it joins (or creates, seed era)."""
    return {
        "userID": user_id,
        "userName": f"{user_id} name",
        "userAvatar": f"https://a.test/{user_id}.png",
        "pushURL": f"rtmp://8888.livepush.myqcloud.com/live/8888_{user_id}?bizid=8888",
        **extra,
    }


def joining(user_id: str, room_id: str, **extra: Any) -> dict[str, Any]:
    """An add_pusher body."""
    return {"roomID": room_id, **member_fields(user_id, **extra)}
