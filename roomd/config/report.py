"""What an operator should fix in the settings: missing keys and unusable values.

Only reads settings and local files; never calls Tencent or anything else
that could change state there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from roomd.auth.signers import choose_user_signer
from roomd.config import ConfigError, Settings


@dataclass(frozen=True)
class Problem:
    key: str
    problem: str


def config_problems(settings: Settings) -> list[Problem]:
    im, live, wechat, auth = settings.im, settings.live, settings.wechat, settings.auth
    problems: list[Problem] = []

    def add(key: str, problem: str) -> None:
        problems.append(Problem(key, problem))

    if not im.configured:
        add(
            "im.sdk_app_id",
            "is 0: IM is not configured, so rooms get no IM groups and clients are not told of member changes",
        )
    if not im.secret_key and not im.private_key and not im.private_key_file:
        add(
            "im.secret_key",
            "is empty and no v1 private key is set: userSigs are made with a development key Tencent rejects",
        )
    if im.secret_key and (im.private_key or im.private_key_file):
        add("im.private_key", "is set together with im.secret_key: the v2 secret key is used")
    if im.private_key and im.private_key_file:
        add("im.private_key_file", "is set together with im.private_key: im.private_key is used")
    try:
        choose_user_signer(im)
    except ConfigError as error:
        key, _, problem = str(error).partition(": ")
        add(key, problem)
    if live.bizid == 0:
        add("live.bizid", "is 0: push and play URLs do not point at a real live streaming account")
    if not live.push_secret_key:
        add("live.push_secret_key", "is empty: push URLs are signed with an empty key and will be refused")
    if bool(wechat.app_id) != bool(wechat.app_secret):
        missing = "wechat.app_secret" if wechat.app_id else "wechat.app_id"
        add(missing, "is empty while its pair is set: WeChat login needs both")
    if auth.mode == "token" and not auth.token_secret and not _writable(Path(settings.server.data_dir)):
        add("server.data_dir", "is not writable: token mode without auth.token_secret keeps its secret there")
    if not auth.admin_key:
        add(
            "auth.admin_key",
            "is empty: the ops routes (log files, /metrics, /debug/actors) answer any client from ops.allow "
            f"({', '.join(settings.ops.allow) or 'no address'}) without a key, and the admin API and console are off",
        )
    if not _writable(Path(settings.log.dir)):
        add("log.dir", f"{settings.log.dir} is not writable: log files cannot be written")
    return problems


def _writable(directory: Path) -> bool:
    """True if `directory` exists and is writable, or could be created."""
    for candidate in (directory, *directory.resolve().parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK)
    return False
