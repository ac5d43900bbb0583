"""Rooms, leases and the listing in Redis: typed calls over the scripts in scripts.py.

Every call is bounded by `redis_timeout` and fails as `RedisUnavailable`
(Redis down, slow, or answering an error): callers turn that into "busy"
for a request, or try again later for what they do by themselves. coredis
retries nothing here (a write retried after its reply was lost would be
applied twice); the callers decide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import coredis
import msgpack
import trio
from coredis.connection import TCPLocation
from coredis.retry import NoRetryPolicy

from roomd.actors.events import event_body
from roomd.actors.messages import (
    AdminPage,
    AdminRoom,
    Audience,
    AudienceRemoved,
    AudienceSaved,
    Change,
    CustomFields,
    CustomFieldSaved,
    EventQueued,
    GroupDestroyed,
    MemberInfo,
    MemberRemoved,
    MemberSaved,
    MemberView,
    RoomRemoved,
    RoomSaved,
    RoomSnapshot,
)
from roomd.cluster import scripts
from roomd.config.redis_url import parse_sentinel_url
from roomd.qcloud.live import stream_name_from_push_url

WRITTEN, GONE_FOR_GOOD, FENCED, NO_LEASE = 1, 2, 0, -1


class RedisUnavailable(Exception):
    """Redis did not answer in time, or answered with an error."""


@dataclass(frozen=True, slots=True)
class StoredRoom:
    """A room as Redis holds it: its fencing, its state and what a restore needs."""

    kind: str
    room_id: str
    owner: str
    epoch: int
    state: str  # pending | open | closing
    creator: str
    room_info: str
    members: tuple[MemberInfo, ...]
    audiences: tuple[Audience, ...]
    custom: CustomFields


def room_name(kind: str, room_id: str) -> str:
    """How a room is named in Redis (room IDs and kind names never hold '/')."""
    return f"{kind}/{room_id}"


def split_name(name: str) -> tuple[str, str]:
    kind, _, room_id = name.partition("/")
    return kind, room_id


OutboxKeys = Callable[[str], list[str]]
"""The outbox streams (one per receiver) a room's webhook events go to."""


def operations(changes: Sequence[Change], outbox: OutboxKeys | None = None, cap: int = 0) -> list[list[Any]]:
    """The WRITE script's operations for `changes`, in order (webhook events only with `outbox`)."""
    ops: list[list[Any]] = []
    for change in changes:
        match change:
            case EventQueued(_, room_id, made) if outbox is not None:
                ops.append(["event", event_body(made), str(made.time), cap, *outbox(room_id)])
            case RoomSaved(_, _, creator, room_info, created):
                ops.append(["room", int(created), creator, room_info])
            case MemberSaved(_, _, m):
                ops.append(["member", m.user_id, m.user_name, m.user_avatar, m.push_url])
            case MemberRemoved(_, _, user_id):
                ops.append(["member_gone", user_id])
            case RoomRemoved():
                ops.append(["removed"])
            case GroupDestroyed():
                ops.append(["group_gone"])
            case AudienceSaved(_, _, audience):
                ops.append(["audience", audience.user_id, audience.user_info])
            case AudienceRemoved(_, _, user_id):
                ops.append(["audience_gone", user_id])
            case CustomFieldSaved(_, _, name, value):
                ops.append(["custom", name, value])
    return ops


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ordered(flat: list[Any]) -> list[tuple[str, list[Any]]]:
    """A HGETALL of msgpack [order, ...] values as (field, rest) in order."""
    pairs = [(_text(flat[i]), msgpack.unpackb(flat[i + 1], raw=False)) for i in range(0, len(flat), 2)]
    pairs.sort(key=lambda pair: pair[1][0])
    return [(field, value[1:]) for field, value in pairs]


def _members(flat: list[Any]) -> tuple[MemberInfo, ...]:
    return tuple(MemberInfo(user_id, *rest) for user_id, rest in _ordered(flat))


def _custom(flat: list[Any]) -> CustomFields:
    return tuple((name, rest[0]) for name, rest in _ordered(flat))


class RoomsInRedis:
    """The cluster's shared state; one per node, over one connection pool."""

    def __init__(self, client: coredis.Redis[bytes], *, timeout: float) -> None:
        self._client = client
        self.timeout = timeout
        self._register = client.register_script(scripts.REGISTER)
        self._renew = client.register_script(scripts.RENEW)
        self._claim = client.register_script(scripts.CLAIM)
        self._release = client.register_script(scripts.RELEASE)
        self._write = client.register_script(scripts.WRITE)
        self._load = client.register_script(scripts.LOAD)
        self._page = client.register_script(scripts.PAGE)
        self._takeover = client.register_script(scripts.TAKEOVER)
        self._admin_page = client.register_script(scripts.ADMIN_PAGE)
        self._lane_lease = client.register_script(scripts.LANE_LEASE)
        self._shared_secret = client.register_script(scripts.SHARED_SECRET)
        self._revoke = client.register_script(scripts.REVOKE)
        self._revoked_after = client.register_script(scripts.REVOKED_AFTER)

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, *, call_timeout: float) -> AsyncIterator[RoomsInRedis]:
        """A pool for the block; connections are made (and made again after Redis restarts) on use.
        `redis+sentinel://host:port[,host:port...]/<primary name>[/db]` asks those Sentinels for the
        primary (and again after a failover)."""
        options: dict[str, Any] = {
            "decode_responses": False,
            "retry_policy": NoRetryPolicy(),
            "connect_timeout": call_timeout,
            "stream_timeout": call_timeout,
        }
        sentinel = parse_sentinel_url(url)
        if sentinel is None:
            async with coredis.Redis.from_url(url, verify_version=False, **options) as client:
                yield cls(client, timeout=call_timeout)
            return
        sentinels, service, db, password = sentinel
        timeouts = {"connect_timeout": call_timeout, "stream_timeout": call_timeout}
        locations = [TCPLocation(host, port) for host, port in sentinels]
        watchers = coredis.Sentinel(locations, sentinel_kwargs=timeouts, decode_responses=False)  # no retries
        primary = watchers.primary_for(
            service, db=db, password=password, connect_timeout=call_timeout, stream_timeout=call_timeout
        )
        async with watchers, primary as client:
            yield cls(client, timeout=call_timeout)

    async def _run(self, call: Any) -> Any:
        try:
            with trio.fail_after(self.timeout):
                return await call
        except trio.TooSlowError:
            raise RedisUnavailable(f"no answer within {self.timeout:g} s") from None
        except coredis.exceptions.RedisError as error:
            raise RedisUnavailable(f"{type(error).__name__}: {error}") from error
        except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError) as error:
            raise RedisUnavailable(f"{type(error).__name__}: {error}") from error

    # --- leases --------------------------------------------------------------------------

    async def register(self, owner: str, address: str, lease_ms: int) -> bool:
        return bool(await self._run(self._register(args=[owner, address, lease_ms])))

    async def renew(self, owner: str, address: str, lease_ms: int) -> bool:
        """False when the lease is gone (expired, or taken): the owner holds nothing any more."""
        return bool(await self._run(self._renew(args=[owner, address, lease_ms])))

    async def resign(self, owner: str) -> None:
        await self._run(self._client.delete([f"{scripts.PREFIX}node:{owner}"]))

    async def address_of(self, owner: str) -> str | None:
        """The link address of a live owner; None once its lease is gone."""
        value = await self._run(self._client.get(f"{scripts.PREFIX}node:{owner}"))
        return None if value is None else _text(value)

    async def owners(self) -> list[str]:
        """Every owner that may still hold rooms, live or dead."""
        return sorted(_text(owner) for owner in await self._run(self._client.smembers(f"{scripts.PREFIX}nodes")))

    async def live_owners(self) -> dict[str, str]:
        """Owner -> link address of every owner whose lease lives."""
        owners = await self.owners()
        if not owners:
            return {}
        addresses = await self._run(self._client.mget([f"{scripts.PREFIX}node:{owner}" for owner in owners]))
        return {owner: _text(address) for owner, address in zip(owners, addresses, strict=True) if address}

    # --- rooms ---------------------------------------------------------------------------

    async def claim(self, owner: str, kind: str, room_id: str) -> tuple[int, str]:
        """(1, epoch) claimed for `owner`; (0, holder) the room exists; (2, holder) it is closing on
        another live node; (-1, "") no lease."""
        answer = await self._run(self._claim(args=[owner, room_name(kind, room_id)]))
        status = int(answer[0])
        return status, _text(answer[1]) if len(answer) > 1 else ""

    async def release(self, owner: str, kind: str, room_id: str, epoch: int) -> bool:
        return bool(await self._run(self._release(args=[owner, room_name(kind, room_id), epoch])))

    async def owner_of(self, kind: str, room_id: str) -> str | None:
        """Who runs the room; None when there is no such room to call (none, being made, or closed)."""
        owner, state = await self._run(
            self._client.hmget(f"{scripts.PREFIX}room:{room_name(kind, room_id)}", ["owner", "state"])
        )
        return None if owner is None or _text(state) != "open" else _text(owner)

    async def owned(self, owner: str) -> list[tuple[str, str]]:
        """(kind, roomID) of every room Redis says `owner` holds."""
        names = await self._run(self._client.smembers(f"{scripts.PREFIX}owned:{owner}"))
        return sorted(split_name(_text(name)) for name in names)

    async def write(self, owner: str, submissions: list[tuple[str, str, list[list[Any]]]]) -> list[int]:
        """Apply each (room name, epoch, operations) if `owner` still holds that epoch:
        one of WRITTEN, GONE_FOR_GOOD (written, and nothing is left of the room), FENCED, NO_LEASE
        per submission."""
        packed = msgpack.packb([[name, epoch, ops] for name, epoch, ops in submissions], use_bin_type=False)
        return [int(status) for status in await self._run(self._write(args=[owner, packed]))]

    async def load(self, kind: str, room_id: str) -> StoredRoom | None:
        answer = await self._run(self._load(args=[room_name(kind, room_id)]))
        if not answer:
            return None
        owner, epoch, state, creator, info, members, audiences, custom = answer
        return StoredRoom(
            kind=kind,
            room_id=room_id,
            owner=_text(owner),
            epoch=int(epoch),
            state=_text(state),
            creator=_text(creator),
            room_info=_text(info),
            members=_members(members),
            audiences=tuple(Audience(user_id, rest[0]) for user_id, rest in _ordered(audiences)),
            custom=_custom(custom),
        )

    async def page(self, kind: str, index: int, count: int) -> list[RoomSnapshot]:
        rooms = await self._run(self._page(args=[kind, index, count]))
        return [
            RoomSnapshot(
                room_id=_text(room_id),
                room_info=_text(info),
                creator=_text(creator),
                members=tuple(
                    MemberView(m.user_id, m.user_name, m.user_avatar, stream_name_from_push_url(m.push_url))
                    for m in _members(members)
                ),
                audience_count=int(audiences),
                custom=_custom(custom),
            )
            for room_id, creator, info, members, audiences, custom in rooms
        ]

    async def admin_page(self, kind: str, *, after: int, limit: int, state: str | None) -> AdminPage:
        cursor, rooms = await self._run(self._admin_page(args=[kind, after, limit, state or ""]))
        return AdminPage(
            tuple(
                AdminRoom(
                    room_id=_text(room_id),
                    state=_text(room_state),
                    creator=_text(creator),
                    room_info=_text(info),
                    members=int(members),
                    audiences=int(audiences),
                    age=round(int(age) / 1000, 3),
                )
                for room_id, room_state, creator, info, members, audiences, age in rooms
            ),
            _text(cursor) or None,
        )

    async def listed_count(self, kind: str) -> int:
        return int(await self._run(self._client.zcard(f"{scripts.PREFIX}listed:{kind}")))

    async def take_over(self, dead: str, owner: str, batch: int) -> list[tuple[str, str, int]] | None:
        """Up to `batch` rooms of `dead` moved to `owner`: (kind, roomID, new epoch) each;
        None when `owner` has no lease."""
        answer = await self._run(self._takeover(args=[dead, owner, batch]))
        if len(answer) == 1 and isinstance(answer[0], int):
            return None
        taken: list[tuple[str, str, int]] = []
        for i in range(0, len(answer), 2):
            kind, room_id = split_name(_text(answer[i]))
            taken.append((kind, room_id, int(answer[i + 1])))
        return taken

    # --- login tokens --------------------------------------------------------------------------

    async def shared_secret(self, name: str, candidate: bytes) -> bytes:
        """The cluster's secret `name` (token_secret, link_secret): `candidate` if this is the first
        node to ask."""
        secret: bytes = await self._run(self._shared_secret(args=[name, candidate]))
        return secret

    async def revoke(self, token_id: str, expires: int, *, keep_after_ms: int) -> None:
        await self._run(self._revoke(args=[token_id, expires, keep_after_ms]))

    async def revoked_after(self, last: str, count: int) -> list[tuple[str, str, int]]:
        """(entry id, token id, expires) of the revocations added after entry `last`, oldest first."""
        entries = await self._run(self._revoked_after(args=[last, count]))
        found: list[tuple[str, str, int]] = []
        for entry_id, fields in entries:
            values = {_text(fields[i]): _text(fields[i + 1]) for i in range(0, len(fields), 2)}
            found.append((_text(entry_id), values.get("id", ""), int(values.get("expires", "0"))))
        return found

    # --- webhook outbox --------------------------------------------------------------------------

    async def hold_lane(self, lease_key: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._run(self._lane_lease(args=[lease_key, owner, ttl_ms])))

    async def outbox_head(self, stream: str, count: int) -> list[tuple[str, str, float]]:
        """(entry id, body, made) of the oldest `count` events waiting in `stream`."""
        entries = await self._run(self._client.xrange(stream, "-", "+", count=count))
        found = []
        for entry in entries:
            fields = {_text(k): _text(v) for k, v in entry.field_values.items()}
            found.append((_text(entry.identifier), fields.get("b", ""), float(fields.get("m", "0"))))
        return found

    async def outbox_done(self, stream: str, entry_id: str) -> None:
        await self._run(self._client.xdel(stream, [entry_id]))

    async def outbox_length(self, stream: str) -> int:
        return int(await self._run(self._client.xlen(stream)))
