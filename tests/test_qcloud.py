"""Tencent protocol code against the known answers of the SPEC."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from roomd.qcloud.live import LiveSigner, stream_name_from_push_url, tx_secret, tx_time_hex
from roomd.qcloud.live_mix import MAX_REPLY_BYTES, mix_query, mix_sign, mix_url, parse_mix_reply
from roomd.qcloud.usersig import (
    EcdsaUserSigner,
    HmacUserSigner,
    Verified,
    VerifyFailure,
    decode_sig,
    encode_sig,
)

V2_KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"


def test_live_signature_known_answer() -> None:
    assert tx_time_hex(1600000000) == "5F5E1000"
    assert tx_secret("abc", "1234_user_1", "5F5E1000") == "24c16afd3f6f05fd7db09c04dbf8543b"


def test_push_and_play_urls() -> None:
    signer = LiveSigner(1234, "abc", 100, "push.test", "play.test", accelerate_valid_time=100)
    assert signer.push_url("user_1", now=1600000000 - 100) == (
        "rtmp://push.test/live/1234_user_1?bizid=1234&txSecret=24c16afd3f6f05fd7db09c04dbf8543b&txTime=5F5E1000"
    )
    assert signer.accelerate_url("1234_user_1", now=1600000000 - 100) == (
        "rtmp://play.test/live/1234_user_1?bizid=1234&txSecret=24c16afd3f6f05fd7db09c04dbf8543b&txTime=5F5E1000"
    )
    assert signer.mixed_play_url("1234_user_1") == "https://play.test/live/1234_user_1.flv"


@pytest.mark.parametrize(
    ("url", "stream"),
    [
        ("rtmp://h/live/1234_a?bizid=1", "1234_a"),
        ("rtmp://h/live/abc", "abc"),
        ("https://h/app/live/s1/extra", "s1"),
        ("rtmp://h/other/abc", None),
        ("rtmp://h/live/?x=1", None),
    ],
)
def test_stream_name_from_push_url(url: str, stream: str | None) -> None:
    assert stream_name_from_push_url(url) == stream


def test_usersig_v2_known_answer() -> None:
    signer = HmacUserSigner(1400000000, V2_KEY)
    sig = signer.make("xiaojun", now=1600000000, expire=15552000)
    payload = decode_sig(sig)
    assert payload == {
        "TLS.ver": "2.0",
        "TLS.identifier": "xiaojun",
        "TLS.sdkappid": 1400000000,
        "TLS.expire": 15552000,
        "TLS.time": 1600000000,
        "TLS.sig": "1Z5PngDjGaufeSiPoBuxdHY7EK3JTdAjMP93S4KvV3M=",
    }
    assert not set(sig) & set("+/=")


def test_usersig_v2_verification_reasons() -> None:
    signer = HmacUserSigner(1400000000, V2_KEY)
    sig = signer.make("xiaojun", now=1600000000, expire=100)
    assert signer.verify(sig, "xiaojun", now=1600000100) == Verified("xiaojun", 1600000000, 100)
    assert signer.verify(sig, "xiaojun", now=1600000101) is VerifyFailure.EXPIRED
    assert signer.verify(sig, "someone", now=1600000000) is VerifyFailure.WRONG_IDENTIFIER
    assert HmacUserSigner(1400000001, V2_KEY).verify(sig, "xiaojun", now=1600000000) is VerifyFailure.WRONG_SDK_APP_ID
    assert HmacUserSigner(1400000000, "other").verify(sig, "xiaojun", now=1600000000) is VerifyFailure.BAD_SIGNATURE
    assert signer.verify("not a sig", "xiaojun", now=1600000000) is VerifyFailure.MALFORMED
    forged = decode_sig(sig)
    assert forged is not None
    forged["TLS.expire"] = 10**9  # stretching the expiry breaks the signature
    assert signer.verify(encode_sig(forged), "xiaojun", now=1600000000) is VerifyFailure.BAD_SIGNATURE


@pytest.fixture(scope="module")
def v1_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_usersig_v1_is_signed_with_ecdsa_p256(v1_key: ec.EllipticCurvePrivateKey) -> None:
    pem = v1_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    signer = EcdsaUserSigner.from_pem(1400000000, "8888", private_pem=pem)
    sig = signer.make("xiaojun", now=1600000000, expire=15552000)
    payload = decode_sig(sig)
    assert payload is not None
    assert {k: v for k, v in payload.items() if k != "TLS.sig"} == {
        "TLS.appid_at_3rd": "1400000000",
        "TLS.account_type": "8888",
        "TLS.identifier": "xiaojun",
        "TLS.sdk_appid": "1400000000",
        "TLS.time": "1600000000",
        "TLS.expire_after": "15552000",
    }
    signed = (
        b"TLS.appid_at_3rd:1400000000\nTLS.account_type:8888\nTLS.identifier:xiaojun\n"
        b"TLS.sdk_appid:1400000000\nTLS.time:1600000000\nTLS.expire_after:15552000\n"
    )
    # verified with the public key alone, independently of roomd's own verifier
    v1_key.public_key().verify(base64.b64decode(str(payload["TLS.sig"])), signed, ec.ECDSA(hashes.SHA256()))


def test_usersig_v1_verification_reasons(v1_key: ec.EllipticCurvePrivateKey) -> None:
    public_pem = (
        v1_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    maker = EcdsaUserSigner(1400000000, "0", v1_key, v1_key.public_key())
    checker = EcdsaUserSigner.from_pem(1400000000, "0", public_pem=public_pem)
    sig = maker.make("xiaojun", now=1600000000, expire=100)
    assert checker.verify(sig, "xiaojun", now=1600000050) == Verified("xiaojun", 1600000000, 100)
    assert checker.verify(sig, "xiaojun", now=1600000101) is VerifyFailure.EXPIRED
    assert checker.verify(sig, "other", now=1600000000) is VerifyFailure.WRONG_IDENTIFIER
    other_key = EcdsaUserSigner(1400000000, "0", None, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert other_key.verify(sig, "xiaojun", now=1600000000) is VerifyFailure.BAD_SIGNATURE
    with pytest.raises(ValueError, match="no v1 private key"):
        checker.make("x", now=1, expire=1)


def test_mixing_api_signature_known_answer() -> None:
    assert mix_sign("abc", 1600000060) == "701d4fb574f32ea35eb285e1f1ab75a8"  # md5("abc1600000060")
    query = mix_query(1250000000, "abc", now=1600000000)
    assert query == {
        "appid": "1250000000",
        "interface": "mix_streamv2.start_mix_stream_advanced",
        "t": "1600000060",
        "sign": "701d4fb574f32ea35eb285e1f1ab75a8",
    }
    assert mix_url("http://fcgi.video.qcloud.com/", query) == (
        "http://fcgi.video.qcloud.com/common_access?appid=1250000000"
        "&interface=mix_streamv2.start_mix_stream_advanced&t=1600000060&sign=701d4fb574f32ea35eb285e1f1ab75a8"
    )


@pytest.mark.parametrize(
    ("status", "content", "error"),
    [
        (500, b'{"code": 0}', "the mixing API answered HTTP 500"),
        (200, b"<html>502</html>", "the mixing API's reply is not JSON"),
        (200, b'{"code": NaN}', "the mixing API's reply is not JSON"),
        (200, b'{"message": "\\ud800"}', "the mixing API's reply is not JSON"),  # no text: cannot be passed on
        (200, b"[" * 60_000, "the mixing API's reply is not JSON"),
        (200, b"[0]", "the mixing API's reply is not a JSON object"),
        (200, b" " * (MAX_REPLY_BYTES + 1), f"the mixing API's reply is larger than {MAX_REPLY_BYTES} bytes"),
    ],
)
def test_mixing_api_replies_that_are_no_result(status: int, content: bytes, error: str) -> None:
    judged = parse_mix_reply(status, content)
    assert judged.result is None and judged.error == error


def test_a_mixing_api_reply_object_is_the_result_whatever_its_code() -> None:
    judged = parse_mix_reply(200, '{"code": -5, "message": "输入流不存在"}'.encode())
    assert judged.result == {"code": -5, "message": "输入流不存在"} and judged.tencent_code == -5
