"""Settings for every part of roomd, and the loader that layers them."""

from roomd.config.loader import ConfigError, load_settings
from roomd.config.settings import (
    AuthSettings,
    ClusterSettings,
    ImSettings,
    KindSettings,
    LimitsSettings,
    LiveSettings,
    LogSettings,
    OpsSettings,
    ServerSettings,
    Settings,
    WebhookSettings,
    WechatSettings,
)

__all__ = [
    "AuthSettings",
    "ClusterSettings",
    "ConfigError",
    "ImSettings",
    "KindSettings",
    "LimitsSettings",
    "LiveSettings",
    "LogSettings",
    "OpsSettings",
    "ServerSettings",
    "Settings",
    "WebhookSettings",
    "WechatSettings",
    "load_settings",
]
