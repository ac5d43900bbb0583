"""The settings tree as frozen dataclasses: one class per TOML section.

Defaults here are the embedded defaults the server starts on with no
configuration at all; `default.toml` beside this file documents each key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

IM_CREATE_GRACE = 0.5  # seconds create_room waits for IM's verdict beyond im.timeout


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 5757
    route_prefix: str = "/weapp"
    max_body_bytes: int = 65536
    data_dir: str = "data"
    persist: bool = True
    mailbox_size: int = 256
    call_timeout: float = 10.0
    drain_grace: float = 1.0
    shutdown_timeout: float = 15.0
    keep_alive_timeout: float = 5.0
    read_timeout: float = 10.0
    write_timeout: float = 10.0
    max_header_bytes: int = 16384
    max_reply_bytes: int = 262144
    max_connections_per_address: int = 128
    listen_backlog: int = 2048
    h2c: bool = False
    reuse_port: bool = False  # listen with SO_REUSEPORT beside other nodes on this port (set by --workers)


@dataclass(frozen=True)
class LiveSettings:
    bizid: int = 0
    push_secret_key: str = field(default="", repr=False)
    valid_time: int = 604800
    accelerate_valid_time: int = 3600
    push_host: str = ""
    play_host: str = ""
    # merge_stream: Tencent's live mixing API (common_access, sign = md5(api_key + t))
    app_id: int = 0  # the live service's appid (not the IM sdkAppID); 0 = merge_stream off
    api_key: str = field(default="", repr=False)
    api_base_url: str = "http://fcgi.video.qcloud.com"
    api_timeout: float = 5.0

    @property
    def effective_push_host(self) -> str:
        return self.push_host or f"{self.bizid}.livepush.myqcloud.com"

    @property
    def effective_play_host(self) -> str:
        return self.play_host or f"{self.bizid}.liveplay.myqcloud.com"


@dataclass(frozen=True)
class ImSettings:
    sdk_app_id: int = 0
    account_type: str = ""
    administrator: str = "admin"
    reserved_identifiers: tuple[str, ...] = ()
    secret_key: str = field(default="", repr=False)
    private_key: str = field(default="", repr=False)
    private_key_file: str = ""
    public_key: str = field(default="", repr=False)
    usersig_expire: int = 15552000
    base_url: str = "https://console.tim.qq.com"
    timeout: float = 5.0
    max_attempts: int = 5
    retry_backoff: float = 2.0
    call_deadline: float = 60.0
    drain_timeout: float = 5.0

    @property
    def configured(self) -> bool:
        return self.sdk_app_id != 0


@dataclass(frozen=True)
class WechatSettings:
    app_id: str = ""
    app_secret: str = field(default="", repr=False)
    base_url: str = "https://api.weixin.qq.com"


@dataclass(frozen=True)
class AuthSettings:
    mode: str = "open"
    token_ttl: int = 7200
    token_secret: str = field(default="", repr=False)
    admin_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class LogSettings:
    dir: str = "logs"
    level: str = "INFO"
    rotation: str = "1 hour"
    retention: str = "7 days"
    format: str = "text"
    max_bytes: int = 536870912


@dataclass(frozen=True)
class OpsSettings:
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class LimitsSettings:
    create_rate_per_address: float = 5.0
    create_burst_per_address: int = 100
    create_rate_per_user: float = 1.0
    create_burst_per_user: int = 10
    login_rate_per_address: float = 2.0
    login_burst_per_address: int = 200


@dataclass(frozen=True)
class ClusterSettings:
    """Multi-node mode: on when `redis_url` is set (see the README, "Running several nodes")."""

    redis_url: str = field(default="", repr=False)  # redis://[:password@]host:port/db; may hold a password
    node_name: str = ""  # "" = <hostname>-<pid>; a node's identity is this plus a random part per lease
    link_host: str = "127.0.0.1"  # where this node accepts links from its peers
    link_port: int = 0  # 0 = any free port
    advertise_host: str = ""  # the address peers use to reach link_host; "" = link_host
    lease_ms: int = 3000  # a node owns its rooms while its lease lives
    renew_interval: float = 1.0  # seconds between lease renewals
    reap_interval: float = 0.25  # seconds between looks for dead nodes whose rooms need an owner
    takeover_batch: int = 200  # rooms claimed per Redis call during a takeover
    redis_timeout: float = 2.0  # seconds one Redis call may take
    relay_interval: float = 0.05  # seconds between batches of relayed heartbeats to a room's owner

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url)


@dataclass(frozen=True)
class WebhookSettings:
    """Events POSTed to the receivers in `urls`, signed with `secret` (README, Operations)."""

    urls: tuple[str, ...] = field(default=(), repr=False)  # may hold credentials: logs show shown_url
    secret: str = field(default="", repr=False)
    timeout: float = 5.0  # seconds one delivery may take
    retry_for: float = 3600.0  # seconds an event is retried before it is dropped (counted, logged)
    max_backoff: float = 60.0  # seconds between two attempts at most (the wait doubles from 1 s)
    max_outbox: int = 100_000  # events waiting per receiver; beyond it the oldest are dropped
    lanes: int = 8  # deliveries in flight at once per receiver (events of one room share a lane)

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def shown_url(self, receiver: int) -> str:
        """Receiver `receiver` as logs and /debug/actors name it: its number, scheme, host and port.
        A webhook URL often carries its credential (user:password@, a token in the query or the
        path, as chat services' hooks do), so nothing else of it is shown."""
        parts = urlsplit(self.urls[receiver])
        host = parts.hostname or ""
        try:
            port = f":{parts.port}" if parts.port is not None else ""
        except ValueError:  # not a number: refused at start, never delivered to
            port = ""
        rest = "/…" if parts.path.strip("/") or parts.query else "/"
        return f"#{receiver + 1} {parts.scheme}://{f'[{host}]' if ':' in host else host}{port}{rest}"


@dataclass(frozen=True)
class KindSettings:
    max_members: int = 6
    heartbeat_timeout: float = 20.0
    max_idle_duration: float = 30.0
    creator_leave_closes_room: bool = True
    max_waiting_rooms: int = 1000
    max_rooms_per_creator: int = 20
    max_rooms_per_address: int = 2000
    create_on_join: bool = True  # add_pusher on an unknown roomID creates the room
    max_audiences: int = 0  # viewers per room (add_audience); 0 = the audience endpoints are off


# the later server's name for creator_leave_closes_room, accepted in TOML and the environment
KIND_SETTING_ALIASES = {"creator_can_destroy_room": "creator_leave_closes_room"}


def _default_kinds() -> dict[str, KindSettings]:
    return {
        "multi_room": KindSettings(max_members=6),
        "double_room": KindSettings(max_members=2),
        "live_room": KindSettings(max_members=4, max_audiences=30),  # anchor = creator, viewers = audiences
    }


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    im: ImSettings = field(default_factory=ImSettings)
    wechat: WechatSettings = field(default_factory=WechatSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    kinds: dict[str, KindSettings] = field(default_factory=_default_kinds)
