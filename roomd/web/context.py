"""What every route needs: settings, the room router, signers, tokens, limits, the clock."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import trio

from roomd.actors.messages import RoomSnapshot
from roomd.actors.router import RoomRouter
from roomd.auth.signers import live_signer
from roomd.auth.tokens import IssuedToken, TokenBook
from roomd.config import KindSettings, Settings
from roomd.qcloud.live import LiveSigner
from roomd.qcloud.usersig import UserSigner
from roomd.web.envelope import Code, RequestError
from roomd.web.metrics import Metrics
from roomd.web.rate_limit import CreationLimits, LoginLimit, TokenBuckets
from roomd.web.request_log import ResponseLog
from roomd.web.stream_mixer import StreamMixer
from roomd.web.wechat_login import WechatLogin


@dataclass
class AppContext:
    settings: Settings
    router: RoomRouter
    user_signer: UserSigner
    live: LiveSigner
    tokens: TokenBook
    metrics: Metrics
    response_log: ResponseLog
    creation_limits: CreationLimits
    login_limit: LoginLimit
    wechat: WechatLogin | None = None
    mixer: StreamMixer | None = None  # merge_stream's calls to the live mixing API (none: no HTTP client)
    wall_clock: Callable[[], float] = field(default=time.time)
    # encoded get_room_list entries, per room snapshot; gone with the snapshot
    listing_entries: weakref.WeakKeyDictionary[RoomSnapshot, bytes] = field(default_factory=weakref.WeakKeyDictionary)
    ready: bool = True  # False while starting
    console_streams: int = 0  # /admin/v1/events streams open now
    started_at: float = field(default_factory=trio.current_time)
    draining: bool = False  # True once a stop was asked for

    @classmethod
    def build(
        cls,
        settings: Settings,
        router: RoomRouter,
        user_signer: UserSigner,
        *,
        http: httpx.AsyncClient | None = None,
        wall_clock: Callable[[], float] = time.time,
        tokens: TokenBook | None = None,
    ) -> AppContext:
        """The edge for `settings`; `http` is the client for WeChat and mixing calls (none: both off);
        `tokens`: the login tokens when not this process's own (a cluster's, shared through Redis)."""
        return cls(
            settings=settings,
            router=router,
            user_signer=user_signer,
            live=live_signer(settings.live),
            tokens=tokens if tokens is not None else TokenBook.from_settings(settings),
            metrics=Metrics(router),
            response_log=ResponseLog(as_json=settings.log.format == "json"),
            creation_limits=CreationLimits(
                per_address=TokenBuckets(
                    rate=settings.limits.create_rate_per_address, burst=settings.limits.create_burst_per_address
                ),
                per_user=TokenBuckets(
                    rate=settings.limits.create_rate_per_user, burst=settings.limits.create_burst_per_user
                ),
            ),
            login_limit=LoginLimit(
                TokenBuckets(rate=settings.limits.login_rate_per_address, burst=settings.limits.login_burst_per_address)
            ),
            wechat=WechatLogin(settings.wechat, http) if http is not None else None,
            mixer=StreamMixer(settings.live, http) if http is not None else None,
            wall_clock=wall_clock,
        )

    def kind(self, name: str) -> KindSettings:
        """The settings of a kind served here (a route exists only for those)."""
        return self.settings.kinds[name]

    @property
    def token_mode(self) -> bool:
        return self.settings.auth.mode == "token"

    def now(self) -> int:
        """Wall-clock seconds, for protocols that need them (txTime, UserSig, tokens)."""
        return int(self.wall_clock())

    def is_reserved_identity(self, user_id: str) -> bool:
        """The IM administrator and `im.reserved_identifiers`: roomd never signs for them."""
        im = self.settings.im
        return user_id == im.administrator or user_id in im.reserved_identifiers

    def charge_login(self, client: str) -> None:
        """Count one credential handed to `client` (`[limits] login_*`); code 12 (HTTP 429) when it
        asks faster than that."""
        why_not = self.login_limit.refusal(client, trio.current_time())
        if why_not is not None:
            raise RequestError(Code.BUSY, why_not, status=429)

    def user_sig(self, user_id: str) -> str:
        return self.user_signer.make(user_id, now=self.now(), expire=self.settings.im.usersig_expire)

    def issue_token(self, user_id: str) -> IssuedToken:
        return self.tokens.issue(user_id, now=self.now())
