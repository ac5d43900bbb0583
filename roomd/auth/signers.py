"""Who clients are to Tencent: their UserSig signer and their signed push URLs.

Chooses the UserSig generation from the settings: a v2 secret key, else a
v1 private key, else a development v2 key made for this process (the
startup log says so; such userSigs are not accepted by Tencent).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from roomd.config import ImSettings, LiveSettings
from roomd.config.loader import ConfigError
from roomd.qcloud.live import LiveSigner
from roomd.qcloud.usersig import EcdsaUserSigner, HmacUserSigner, UserSigner


@dataclass(frozen=True)
class SignerChoice:
    signer: UserSigner
    description: str  # for the startup log; never contains key material
    development: bool = False  # a key made for this process: its userSigs are good nowhere else


def choose_user_signer(im: ImSettings) -> SignerChoice:
    if im.secret_key:
        return SignerChoice(HmacUserSigner(im.sdk_app_id, im.secret_key), "UserSig v2 (HMAC-SHA256)")
    private_pem = im.private_key
    if not private_pem and im.private_key_file:
        try:
            private_pem = Path(im.private_key_file).read_text()
        except OSError as e:
            raise ConfigError(f"im.private_key_file: cannot read {im.private_key_file}: {e.strerror}") from None
    if private_pem or im.public_key:
        try:
            signer = EcdsaUserSigner.from_pem(
                im.sdk_app_id, im.account_type, private_pem=private_pem, public_pem=im.public_key
            )
        except ValueError as e:
            raise ConfigError(f"im.private_key: not a usable ECDSA P-256 key ({e})") from None
        return SignerChoice(signer, "UserSig v1 (ECDSA P-256)")
    development_key = secrets.token_hex(32)
    return SignerChoice(
        HmacUserSigner(im.sdk_app_id, development_key),
        "UserSig v2 with a development key made for this process "
        "(im.secret_key is not set; Tencent will not accept these userSigs)",
        development=True,
    )


def live_signer(live: LiveSettings) -> LiveSigner:
    return LiveSigner(
        bizid=live.bizid,
        push_secret_key=live.push_secret_key,
        valid_time=live.valid_time,
        accelerate_valid_time=live.accelerate_valid_time,
        push_host=live.effective_push_host,
        play_host=live.effective_play_host,
    )
