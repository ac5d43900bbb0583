"""Tencent IM UserSig, both generations: make and verify.

v2 signs with HMAC-SHA256 over a shared secret; v1 signs with ECDSA P-256
over a private key. Both wrap their JSON the same way: zlib, base64, then a
URL-safe alphabet of their own (`+`->`*`, `/`->`-`, `=`->`_`).
Verification gives one reason per failure so a login can say what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

_TO_SIG = str.maketrans({"+": "*", "/": "-", "=": "_"})
_FROM_SIG = str.maketrans({"*": "+", "-": "/", "_": "="})
MAX_SIG_JSON_BYTES = 16384  # a UserSig's JSON is a few hundred bytes
_V1_SIGNED_FIELDS = (
    "TLS.appid_at_3rd",
    "TLS.account_type",
    "TLS.identifier",
    "TLS.sdk_appid",
    "TLS.time",
    "TLS.expire_after",
)


class VerifyFailure(enum.Enum):
    """Why a UserSig did not verify; each has a sentence for operators and clients."""

    MALFORMED = "the userSig cannot be decoded"
    WRONG_SDK_APP_ID = "the userSig was made for another sdkAppID"
    WRONG_IDENTIFIER = "the userSig was made for another userID"
    EXPIRED = "the userSig has expired"
    BAD_SIGNATURE = "the userSig signature does not match"


@dataclass(frozen=True)
class Verified:
    identifier: str
    issued_at: int
    expire: int


class UserSigner(Protocol):
    @property
    def version(self) -> str: ...  # read-only: the signers are frozen dataclasses

    def make(self, identifier: str, *, now: int, expire: int) -> str: ...

    def verify(self, sig: str, identifier: str, *, now: int) -> Verified | VerifyFailure: ...


def encode_sig(payload: dict[str, object]) -> str:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    packed = zlib.compress(text.encode("utf-8"))
    return base64.b64encode(packed).decode("ascii").translate(_TO_SIG)


def decode_sig(sig: str) -> dict[str, object] | None:
    """The JSON inside a UserSig, or None when it is not one."""
    if not sig.isascii():
        return None
    try:
        packed = base64.b64decode(sig.translate(_FROM_SIG).encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        text = inflater.decompress(packed, MAX_SIG_JSON_BYTES)
        if inflater.unconsumed_tail:  # a zlib bomb, or no UserSig
            return None
        payload = json.loads(text.decode("utf-8"))
    except (ValueError, UnicodeError, binascii.Error, zlib.error, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


def _decode_claims(
    sig: str,
    *,
    sdk_app_id: int,
    identifier: str,
    now: int,
    keys: tuple[str, str, str, str],
) -> tuple[dict[str, object], Verified] | VerifyFailure:
    """The sig's JSON and its checked claims, before its signature is looked at."""
    payload = decode_sig(sig)
    if payload is None:
        return VerifyFailure.MALFORMED
    appid_key, id_key, time_key, expire_key = keys
    if _as_int(payload.get(appid_key)) != sdk_app_id:
        return VerifyFailure.WRONG_SDK_APP_ID
    if payload.get(id_key) != identifier:
        return VerifyFailure.WRONG_IDENTIFIER
    issued, expire = _as_int(payload.get(time_key)), _as_int(payload.get(expire_key))
    if issued is None or expire is None:
        return VerifyFailure.MALFORMED
    if issued + expire < now:
        return VerifyFailure.EXPIRED
    return payload, Verified(identifier=identifier, issued_at=issued, expire=expire)


@dataclass(frozen=True)
class HmacUserSigner:
    """UserSig v2: HMAC-SHA256 with the application's secret key."""

    sdk_app_id: int
    secret_key: str = field(repr=False)
    version: str = "v2"

    def _sign(self, identifier: str, now: int, expire: int) -> str:
        text = f"TLS.identifier:{identifier}\nTLS.sdkappid:{self.sdk_app_id}\nTLS.time:{now}\nTLS.expire:{expire}\n"
        digest = hmac.new(self.secret_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256)
        return base64.b64encode(digest.digest()).decode("ascii")

    def make(self, identifier: str, *, now: int, expire: int) -> str:
        return encode_sig(
            {
                "TLS.ver": "2.0",
                "TLS.identifier": identifier,
                "TLS.sdkappid": self.sdk_app_id,
                "TLS.expire": expire,
                "TLS.time": now,
                "TLS.sig": self._sign(identifier, now, expire),
            }
        )

    def verify(self, sig: str, identifier: str, *, now: int) -> Verified | VerifyFailure:
        decoded = _decode_claims(
            sig,
            sdk_app_id=self.sdk_app_id,
            identifier=identifier,
            now=now,
            keys=("TLS.sdkappid", "TLS.identifier", "TLS.time", "TLS.expire"),
        )
        if isinstance(decoded, VerifyFailure):
            return decoded
        payload, claims = decoded
        given = payload.get("TLS.sig")
        expected = self._sign(identifier, claims.issued_at, claims.expire)
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode("utf-8", errors="replace"), expected.encode("ascii")
        ):
            return VerifyFailure.BAD_SIGNATURE
        return claims


@dataclass(frozen=True)
class EcdsaUserSigner:
    """UserSig v1: ECDSA P-256 over SHA-256 with the application's private key."""

    sdk_app_id: int
    account_type: str
    private_key: ec.EllipticCurvePrivateKey | None = field(repr=False)
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    version: str = "v1"

    @classmethod
    def from_pem(
        cls, sdk_app_id: int, account_type: str, *, private_pem: str = "", public_pem: str = ""
    ) -> EcdsaUserSigner:
        private_key = None
        if private_pem:
            loaded = serialization.load_pem_private_key(private_pem.encode(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError("the v1 private key is not an elliptic-curve key")
            private_key = loaded
        if public_pem:
            public = serialization.load_pem_public_key(public_pem.encode())
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise ValueError("the v1 public key is not an elliptic-curve key")
        elif private_key is not None:
            public = private_key.public_key()
        else:
            raise ValueError("a v1 signer needs a private or a public key")
        return cls(sdk_app_id, account_type or "0", private_key, public)

    def _content(self, fields: dict[str, str]) -> bytes:
        return "".join(f"{name}:{fields[name]}\n" for name in _V1_SIGNED_FIELDS).encode("utf-8")

    def make(self, identifier: str, *, now: int, expire: int) -> str:
        if self.private_key is None:
            raise ValueError("no v1 private key is configured; cannot make a UserSig")
        fields = {
            "TLS.appid_at_3rd": str(self.sdk_app_id),
            "TLS.account_type": self.account_type,
            "TLS.identifier": identifier,
            "TLS.sdk_appid": str(self.sdk_app_id),
            "TLS.time": str(now),
            "TLS.expire_after": str(expire),
        }
        signature = self.private_key.sign(self._content(fields), ec.ECDSA(hashes.SHA256()))
        return encode_sig({**fields, "TLS.sig": base64.b64encode(signature).decode("ascii")})

    def verify(self, sig: str, identifier: str, *, now: int) -> Verified | VerifyFailure:
        decoded = _decode_claims(
            sig,
            sdk_app_id=self.sdk_app_id,
            identifier=identifier,
            now=now,
            keys=("TLS.sdk_appid", "TLS.identifier", "TLS.time", "TLS.expire_after"),
        )
        if isinstance(decoded, VerifyFailure):
            return decoded
        payload, claims = decoded
        if not all(isinstance(payload.get(name), str) for name in _V1_SIGNED_FIELDS):
            return VerifyFailure.MALFORMED
        fields = {name: str(payload[name]) for name in _V1_SIGNED_FIELDS}
        try:
            signature = base64.b64decode(str(payload.get("TLS.sig", "")), validate=True)
            self.public_key.verify(signature, self._content(fields), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            return VerifyFailure.BAD_SIGNATURE
        return claims
