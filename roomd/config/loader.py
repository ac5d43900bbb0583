"""Layer the settings: built-in defaults < TOML file < ROOMD_* environment < flags.

Every value is checked against the type of its field and a few range rules;
the first problem found becomes one `ConfigError` line naming the key, the
problem and where the value came from, so that `roomd` can print it and
exit with status 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from roomd.config.durations import is_duration
from roomd.config.redis_url import parse_sentinel_url
from roomd.config.settings import IM_CREATE_GRACE, KIND_SETTING_ALIASES, KindSettings, Settings

ENV_PREFIX = "ROOMD_"
MAX_AUDIENCES = 200  # get_audiences lists them all: 200 of 1 KiB each stay under server.max_reply_bytes
MAX_MEMBERS = 200  # get_pushers lists them all: 200 of 3.4 KiB at most each stay within a node link's frame
KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RESERVED_KIND_NAMES = frozenset({"utils"})
LOG_LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"})


class ConfigError(Exception):
    """One configuration problem, phrased as a line an operator can act on."""


# A raw layer: section -> key -> (value, source); kinds nest one level deeper.
RawValue = tuple[Any, str]


def load_settings(
    *,
    config_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build the settings from every layer; raise ConfigError on the first problem."""
    merged: dict[str, dict[str, Any]] = {}
    if config_path is not None:
        _merge(merged, _read_toml(Path(config_path)), source=f"file {config_path}")
    if environ is not None:
        _merge(merged, _environment_layer(environ), source="environment")
    if overrides:
        _merge(merged, {s: dict(v) for s, v in overrides.items()}, source="command line")
    settings = _build(merged)
    _validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def _environment_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 2 and parts[0] != "kinds":
            layer.setdefault(parts[0], {})[parts[1]] = (value, f"environment {name}")
        elif len(parts) == 3 and parts[0] == "kinds":
            layer.setdefault("kinds", {}).setdefault(parts[1], {})[parts[2]] = (
                value,
                f"environment {name}",
            )
        else:
            raise ConfigError(f"{name}: not a setting; use ROOMD_<SECTION>__<KEY> or ROOMD_KINDS__<KIND>__<KEY>")
    return layer


def _merge(into: dict[str, Any], layer: Mapping[str, Any], *, source: str) -> None:
    """Merge one layer, tagging each leaf with where it came from."""
    for section, table in layer.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{section}: expected a table of settings ({source})")
        target = into.setdefault(section, {})
        for key, value in table.items():
            if section == "kinds":
                if not isinstance(value, Mapping):
                    raise ConfigError(f"kinds.{key}: expected a table of settings ({source})")
                kind = target.setdefault(key, {})
                for kkey, kvalue in value.items():
                    kind[kkey] = kvalue if isinstance(kvalue, tuple) else (kvalue, source)
            else:
                target[key] = value if isinstance(value, tuple) else (value, source)


def _build(merged: dict[str, dict[str, Any]]) -> Settings:
    defaults = Settings()
    sections: dict[str, Any] = {}
    section_types = {f.name: f for f in dataclasses.fields(Settings)}
    for section, table in merged.items():
        if section not in section_types:
            first_source = next(iter(table.values()), (None, "?"))[1] if table else "?"
            raise ConfigError(f"{section}: unknown section (known: {', '.join(section_types)}) ({first_source})")
    for name in section_types:
        table = merged.get(name, {})
        current = getattr(defaults, name)
        if name == "kinds":
            kinds = dict(current)
            for kind_name, kind_table in table.items():
                base = kinds.get(kind_name, KindSettings())
                kinds[kind_name] = _apply(base, _unalias(kind_table, f"kinds.{kind_name}"), f"kinds.{kind_name}")
            sections[name] = kinds
        else:
            sections[name] = _apply(current, table, name)
    return Settings(**sections)


def _unalias(table: Mapping[str, RawValue], prefix: str) -> Mapping[str, RawValue]:
    """A kind's table with the later server's setting names turned into roomd's."""
    renamed = dict(table)
    for alias, name in KIND_SETTING_ALIASES.items():
        if alias in renamed:
            if name in renamed:
                raise ConfigError(f"{prefix}.{alias}: the same setting as {prefix}.{name}; give one of them")
            renamed[name] = renamed.pop(alias)
    return renamed


def _apply(base: Any, table: Mapping[str, RawValue], prefix: str) -> Any:
    hints = get_type_hints(type(base))
    known = [f.name for f in dataclasses.fields(base)]
    secret = {f.name for f in dataclasses.fields(base) if not f.repr}  # keys, passwords, URLs holding them
    changes: dict[str, Any] = {}
    for key, (value, source) in table.items():
        if key not in hints:
            raise ConfigError(f"{prefix}.{key}: unknown key (known: {', '.join(known)}) ({source})")
        shown = f"a {type(value).__name__} (not shown: it may be a secret)" if key in secret else repr(value)
        changes[key] = _coerce(value, hints[key], f"{prefix}.{key}", source, shown)
    return dataclasses.replace(base, **changes)


def _coerce(value: Any, expected: type, key: str, source: str, shown: str) -> Any:
    """`value` as the setting's type; a ConfigError naming `shown` (the value, or what it is) if it is not one."""
    from_text = isinstance(value, str) and source.startswith("environment")
    if expected is bool:
        if isinstance(value, bool):
            return value
        if from_text and value.strip().lower() in ("true", "1", "yes", "on"):
            return True
        if from_text and value.strip().lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {shown} ({source})")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text:
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {shown} ({source})")
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_text:
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {shown} ({source})")
    if expected is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {shown} ({source})")
    if expected == tuple[str, ...]:
        if from_text:  # environment: comma-separated
            return tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(f"{key}: expected a list of strings, got {shown} ({source})")
    raise ConfigError(f"{key}: unsupported setting type {expected!r}")


def _http_url(url: str) -> bool:
    """Whether `url` is an http(s) URL with a host that an HTTP client can send to."""
    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is not a number is a ValueError
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and (port is None or 0 < port < 65536)
        and url.isascii()
        and not any(c.isspace() or c in '<>"{}|\\^`' for c in url)
    )


def _validate(s: Settings) -> None:
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(0 <= s.server.port <= 65535, f"server.port: must be 0..65535, got {s.server.port}")
    prefix = s.server.route_prefix
    require(
        prefix == "" or (prefix.startswith("/") and not prefix.endswith("/")),
        f"server.route_prefix: must start with '/' and not end with '/', got {prefix!r}",
    )
    require(s.server.max_body_bytes > 0, "server.max_body_bytes: must be positive")
    require(s.server.mailbox_size > 0, "server.mailbox_size: must be positive")
    require(s.server.call_timeout > 0, "server.call_timeout: must be positive")
    require(s.server.drain_grace >= 0, "server.drain_grace: must not be negative")
    require(s.server.shutdown_timeout > 0, "server.shutdown_timeout: must be positive")
    require(s.server.keep_alive_timeout > 0, "server.keep_alive_timeout: must be positive")
    require(s.server.read_timeout > 0, "server.read_timeout: must be positive")
    require(s.server.max_header_bytes >= 1024, "server.max_header_bytes: must be at least 1024")
    require(s.server.write_timeout > 0, "server.write_timeout: must be positive")
    require(s.server.max_reply_bytes >= 4096, "server.max_reply_bytes: must be at least 4096")
    require(
        s.server.max_connections_per_address >= 0,
        "server.max_connections_per_address: must not be negative (0 = no limit)",
    )
    require(
        1 <= s.server.listen_backlog <= 65_535,
        "server.listen_backlog: must be 1-65535",
    )
    require(
        s.server.call_timeout > s.im.timeout + IM_CREATE_GRACE,
        f"server.call_timeout: must exceed im.timeout + {IM_CREATE_GRACE:g} s (create_room waits that "
        f"long for IM), got {s.server.call_timeout:g} with im.timeout {s.im.timeout:g}",
    )
    require(s.im.drain_timeout >= 0, "im.drain_timeout: must not be negative")
    require(s.live.bizid >= 0, "live.bizid: must not be negative")
    require(s.live.valid_time > 0, "live.valid_time: must be positive")
    require(s.live.accelerate_valid_time > 0, "live.accelerate_valid_time: must be positive")
    require(s.im.sdk_app_id >= 0, "im.sdk_app_id: must not be negative")
    require(s.im.usersig_expire > 0, "im.usersig_expire: must be positive")
    require(
        s.im.base_url.startswith(("http://", "https://")),
        f"im.base_url: must be an http:// or https:// URL, got {s.im.base_url!r}",
    )
    require(s.im.timeout > 0, "im.timeout: must be positive")
    require(s.im.max_attempts >= 1, "im.max_attempts: must be at least 1")
    require(s.im.retry_backoff >= 0, "im.retry_backoff: must not be negative")
    require(s.im.call_deadline > 0, "im.call_deadline: must be positive")
    require(
        not s.im.configured or bool(s.im.administrator),
        "im.administrator: must be set when im.sdk_app_id is",
    )
    require(
        s.wechat.base_url.startswith(("http://", "https://")),
        f"wechat.base_url: must be an http:// or https:// URL, got {s.wechat.base_url!r}",
    )
    require(
        s.auth.mode in ("open", "token"),
        f"auth.mode: must be 'open' or 'token', got {s.auth.mode!r}",
    )
    require(s.auth.token_ttl > 0, "auth.token_ttl: must be positive")
    require(
        s.log.level.upper() in LOG_LEVELS,
        f"log.level: must be one of {', '.join(sorted(LOG_LEVELS))}, got {s.log.level!r}",
    )
    require(
        s.log.format in ("text", "json"),
        f"log.format: must be 'text' or 'json', got {s.log.format!r}",
    )
    require(s.log.max_bytes >= 1 << 20, "log.max_bytes: must be at least 1048576 (1 MiB)")
    for duration_key in ("rotation", "retention"):
        value = getattr(s.log, duration_key)
        require(
            is_duration(value),
            f"log.{duration_key}: expected a duration like '1 hour' or '30 minutes', got {value!r}",
        )
    for cidr in s.ops.allow:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"ops.allow: {cidr!r} is not an address or network like 10.0.0.0/8") from None
    limits = s.limits
    for name in ("create_rate_per_address", "create_rate_per_user", "login_rate_per_address"):
        require(getattr(limits, name) >= 0, f"limits.{name}: must not be negative (0 = no limit)")
    for name in ("create_burst_per_address", "create_burst_per_user", "login_burst_per_address"):
        require(getattr(limits, name) >= 1, f"limits.{name}: must be at least 1")
    require(s.live.api_timeout > 0, "live.api_timeout: must be positive")
    require(
        s.live.api_base_url.startswith(("http://", "https://")), "live.api_base_url: must be an http:// or https:// URL"
    )
    cluster = s.cluster
    require(
        not cluster.redis_url
        or cluster.redis_url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")),
        "cluster.redis_url: must be a redis://, rediss://, unix:// or redis+sentinel:// URL "
        "(or empty: one process, SQLite)",
    )
    if cluster.redis_url.startswith("redis+sentinel://"):
        try:
            parse_sentinel_url(cluster.redis_url)
        except ValueError as error:
            raise ConfigError(f"cluster.redis_url: {error}") from None
    require(cluster.lease_ms >= 500, "cluster.lease_ms: must be at least 500")
    require(
        0 < cluster.renew_interval * 1000 <= cluster.lease_ms / 2,
        "cluster.renew_interval: must be positive and at most half of cluster.lease_ms",
    )
    require(0 < cluster.reap_interval <= 5, "cluster.reap_interval: must be between 0 and 5 seconds")
    require(0 < cluster.relay_interval <= 1, "cluster.relay_interval: must be between 0 and 1 second")
    require(cluster.takeover_batch >= 1, "cluster.takeover_batch: must be at least 1")
    require(cluster.redis_timeout > 0, "cluster.redis_timeout: must be positive")
    require(0 <= cluster.link_port <= 65535, "cluster.link_port: must be 0 to 65535")
    require(
        not (s.server.reuse_port and cluster.link_port),
        "cluster.link_port: must be 0 (any free port) for nodes sharing a port (roomd serve --workers)",
    )
    hooks = s.webhooks
    for number, url in enumerate(hooks.urls, 1):  # named by number: a webhook URL may hold its credential
        require(_http_url(url), f"webhooks.urls: #{number} is not an http:// or https:// URL with a host")
    require(len(hooks.urls) <= 8, "webhooks.urls: at most 8 receivers")
    require(
        not hooks.urls or bool(hooks.secret), "webhooks.secret: must be set when webhooks.urls is (receivers check it)"
    )
    require(hooks.timeout > 0, "webhooks.timeout: must be positive")
    require(hooks.retry_for > 0, "webhooks.retry_for: must be positive")
    require(1 <= hooks.max_backoff <= 3600, "webhooks.max_backoff: must be 1 to 3600 seconds")
    require(1_000 <= hooks.max_outbox <= 10_000_000, "webhooks.max_outbox: must be 1000 to 10000000")
    require(1 <= hooks.lanes <= 64, "webhooks.lanes: must be 1 to 64")
    require(bool(s.kinds), "kinds: at least one room kind must be configured")
    for name, kind in s.kinds.items():
        require(
            bool(KIND_NAME.match(name)) and name not in RESERVED_KIND_NAMES,
            f"kinds.{name}: a kind name must be lowercase letters, digits and '_' (at most 32) and not 'utils'",
        )
        require(1 <= kind.max_members <= MAX_MEMBERS, f"kinds.{name}.max_members: must be 1 to {MAX_MEMBERS}")
        require(kind.heartbeat_timeout > 0, f"kinds.{name}.heartbeat_timeout: must be positive")
        require(kind.max_idle_duration > 0, f"kinds.{name}.max_idle_duration: must be positive")
        for cap in ("max_waiting_rooms", "max_rooms_per_creator", "max_rooms_per_address"):
            require(getattr(kind, cap) >= 0, f"kinds.{name}.{cap}: must not be negative (0 = no limit)")
        require(
            0 <= kind.max_audiences <= MAX_AUDIENCES,
            f"kinds.{name}.max_audiences: must be 0 (endpoints off) to {MAX_AUDIENCES}",
        )
