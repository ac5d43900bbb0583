"""Calls as a logged-in user in token mode: `?userID=&token=` in the query, the body as JSON."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Api, Reply


async def logged_in(api: Api, count: int, *, kind: str) -> list[dict[str, str]]:
    """`count` fresh users, each as `{userID, token}` (get_im_login_info gives both in token mode)."""
    logins = [(await api.post("get_im_login_info", {"userIDPrefix": "w"}, kind=kind)).body for _ in range(count)]
    return [{"userID": b["userID"], "token": b["token"]} for b in logins]


async def call_as(api: Api, who: dict[str, str], kind: str, endpoint: str, body: dict[str, Any]) -> Reply:
    path = f"{api.prefix}/{kind}/{endpoint}?userID={who['userID']}&token={who['token']}"
    return await api.raw(path, json.dumps(body).encode(), "application/json")
