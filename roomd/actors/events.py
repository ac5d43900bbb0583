"""Webhook events as rooms make them: saved with the change they tell of, so that a receiver hears
of every change that was acknowledged (and of none that was undone), even across kill -9."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from roomd.actors.messages import EventQueued, WebhookEvent


def event(name: str, kind: str, room_id: str, *, member: str | None = None, reason: str | None = None) -> EventQueued:
    """A new event (`name`: room_created, room_closed, member_joined, ...) about the room, now."""
    made = WebhookEvent(
        id=f"evt_{secrets.token_hex(12)}",
        event=name,
        time=round(time.time(), 3),
        kind=kind,
        room_id=room_id,
        member=member,
        reason=reason,
    )
    return EventQueued(kind, room_id, made)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One event for one receiver, saved and waiting to be delivered."""

    row: int  # the outbox row (SQLite rowid); delivered or dropped: EventDelivered(row)
    receiver: int  # index into webhooks.urls
    kind: str
    room_id: str  # one room's events go out in order
    body: str  # the JSON the receiver gets
    made: float  # unix time of the event: retried until webhooks.retry_for after it


def event_body(made: WebhookEvent) -> str:
    """The JSON a receiver gets (compact, UTF-8, fields in a fixed order)."""
    body: dict[str, object] = {
        "id": made.id,
        "event": made.event,
        "time": made.time,
        "kind": made.kind,
        "room": made.room_id,
        "member": made.member,
    }
    if made.reason is not None:
        body["reason"] = made.reason
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
