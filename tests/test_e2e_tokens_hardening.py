"""Token mode on real server processes, against the ways it used to break:
another spelling of a revoked token, a token secret that could not be
written or was cut short, a logout the disk refused, and two servers on
one data_dir."""

from __future__ import annotations

import base64
import os
import re
import resource
import time
from pathlib import Path

import httpx
import pytest

from roomd.qcloud.usersig import HmacUserSigner
from tests.conftest import eventually
from tests.file_limits import set_file_size_limit
from tests.server_process import failing_roomd, running_roomd

pytestmark = pytest.mark.slow

IM_SECRET = "hardening-im-secret"
ENV = {"ROOMD_AUTH__MODE": "token", "ROOMD_IM__SECRET_KEY": IM_SECRET}
FILE_SIZE_LIMIT = 10  # bytes: less than a token secret


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def _other_spellings(token: str) -> list[str]:
    expires, nonce, mac = token.split(".")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused_bits_set = last[last.index(mac[-1]) | 1]  # decodes to the same MAC
    fullwidth = "".join(chr(ord(c) - ord("0") + ord("０")) for c in expires)  # noqa: RUF001 -- fullwidth digits, on purpose
    return [
        "0" + token,
        "00" + token,
        "²" + token,
        f"{fullwidth}.{nonce}.{mac}",
        f"{expires[:-1]}{chr(ord(expires[-1]) - ord('0') + ord('０'))}.{nonce}.{mac}",  # noqa: RUF001 -- a fullwidth digit, on purpose
        f"{expires}.{nonce.upper()}.{mac}",
        f"{expires}.{nonce}.{mac}=",
        f"{expires}.{nonce}.{mac[:-1]}{unused_bits_set}",
        f"+{token}",
        f" {token}",
        f"{token}\n",
        f"{expires}.{nonce}.{mac}.",
    ]


async def _every_spelling_is_refused(http: httpx.AsyncClient, token: str) -> None:
    for spelling in [token, *_other_spellings(token)]:
        params = {"userID": "alice", "token": spelling}
        reply = (await http.post("/weapp/multi_room/get_room_list", params=params, json={})).json()
        assert reply["code"] == 7 and reply["detail"], (spelling, reply)


async def test_no_spelling_of_a_revoked_token_gets_past_logout_before_or_after_a_restart(tmp_path: Path) -> None:
    sig = HmacUserSigner(0, IM_SECRET).make("alice", now=int(time.time()), expire=3600)
    async with running_roomd(tmp_path, **ENV) as first, httpx.AsyncClient(base_url=first.base_url) as http:
        login = (await http.post("/weapp/multi_room/login", params={"userID": "alice", "userSig": sig})).json()
        token = login["token"]
        other = (await http.post("/weapp/multi_room/login", params={"userID": "alice", "userSig": sig})).json()
        auth = {"userID": "alice", "token": token}
        assert (await http.post("/weapp/multi_room/logout", params=auth, json={})).json()["code"] == 0
        await _every_spelling_is_refused(http, token)
        for spelling in [token, *_other_spellings(token)]:
            logout = (await http.post("/weapp/multi_room/logout", params={"userID": "alice", "token": spelling})).json()
            assert logout["code"] == 7, (spelling, logout)
        # the other login of the same user is a token of its own, still valid
        other_auth = {"userID": "alice", "token": other["token"]}
        assert (await http.post("/weapp/multi_room/get_room_list", params=other_auth, json={})).json()["code"] == 0

    revoked = (tmp_path / "data" / "revoked_tokens").read_text().splitlines()
    assert len(revoked) == 1 and token not in revoked[0]
    async with running_roomd(tmp_path, **ENV) as second, httpx.AsyncClient(base_url=second.base_url) as http:
        await _every_spelling_is_refused(http, token)
        assert (await http.post("/weapp/multi_room/get_room_list", params=other_auth, json={})).json()["code"] == 0
    assert not any("Traceback" in line for line in first.output + second.output)


async def test_a_secret_that_cannot_be_written_stops_the_start_and_leaves_nothing_behind(tmp_path: Path) -> None:
    failed = await failing_roomd(tmp_path, preexec_fn=_limit_file_size, **ENV)
    secret_path = tmp_path / "data" / "token_secret"
    assert failed.returncode == 2, failed.output
    assert len(failed.output) == 1, failed.output
    assert failed.output[0].startswith("roomd: cannot make the token secret data/token_secret: File too large")
    assert not secret_path.exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["roomd.lock"]  # no temp file either

    async with running_roomd(tmp_path, **ENV) as server, httpx.AsyncClient(base_url=server.base_url) as http:
        reply = (await http.post("/weapp/multi_room/get_im_login_info", json={})).json()
        assert reply["code"] == 0 and reply["token"]
    secret = secret_path.read_text()
    assert len(secret) == 64 and all(c in "0123456789abcdef" for c in secret)
    assert secret_path.stat().st_mode & 0o777 == 0o600


async def test_a_corrupt_secret_stops_the_start_instead_of_becoming_the_key(tmp_path: Path) -> None:
    secret_path = tmp_path / "data" / "token_secret"
    made = b"0123456789abcdef" * 4  # the form roomd makes: 64 hex characters
    for corrupt in (b"", b"\n", b"short-secret\n", b"\xff" * 40, made[:32], made[:63] + b"\n"):
        secret_path.parent.mkdir(exist_ok=True)
        secret_path.write_bytes(corrupt)
        failed = await failing_roomd(tmp_path, **ENV)
        assert failed.returncode == 2, failed.output
        assert failed.output == [
            f"roomd: the token secret data/token_secret is corrupt ({len(corrupt)} bytes); remove it to make a new one"
        ]
        assert secret_path.read_bytes() == corrupt  # left for the operator to look at


async def test_a_token_file_that_is_not_a_regular_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    revoked = tmp_path / "data" / "revoked_tokens"
    revoked.mkdir(parents=True)
    failed = await failing_roomd(tmp_path, **ENV)
    assert failed.returncode == 2, failed.output
    assert failed.output == [
        "roomd: data/revoked_tokens should hold the revoked tokens but is not a regular file; remove it"
    ]
    revoked.rmdir()
    os.mkfifo(revoked)  # would block a start that opened it
    failed = await failing_roomd(tmp_path, **ENV)
    assert failed.returncode == 2 and len(failed.output) == 1 and "not a regular file" in failed.output[0]
    revoked.unlink()
    (tmp_path / "data" / "token_secret").unlink()  # made by the first start
    os.mkfifo(tmp_path / "data" / "token_secret")
    failed = await failing_roomd(tmp_path, **ENV)
    assert failed.output == [
        "roomd: the token secret data/token_secret is not a regular file; remove it to make a new one"
    ]


async def test_a_logout_the_disk_refused_is_written_once_it_has_room_and_holds_after_a_restart(
    tmp_path: Path,
) -> None:
    sig = HmacUserSigner(0, IM_SECRET).make("alice", now=int(time.time()), expire=3600)
    revoked = tmp_path / "data" / "revoked_tokens"
    async with running_roomd(tmp_path, **ENV) as first, httpx.AsyncClient(base_url=first.base_url) as http:
        token = (await http.post("/weapp/multi_room/login", params={"userID": "alice", "userSig": sig})).json()["token"]
        expires, _, mac = token.split(".")
        line = f"{base64.urlsafe_b64decode(mac + '=').hex()} {expires}"
        auth = {"userID": "alice", "token": token}
        set_file_size_limit(first.process.pid, 1)  # from now on every file write of the process fails (EFBIG)
        try:
            logout = await http.post("/weapp/multi_room/logout", params=auth, json={})
            assert logout.status_code == 503 and logout.json()["code"] == 12, logout.json()
            assert "could not be written" in logout.json()["detail"]
            # refused from now on, so its client cannot log out again: the server has to write it
            refused = (await http.post("/weapp/multi_room/get_room_list", params=auth, json={})).json()
            assert refused["code"] == 7 and "revoked" in refused["detail"]
            assert (await http.post("/weapp/multi_room/logout", params=auth, json={})).json()["code"] == 7
            assert not revoked.exists() or revoked.read_text() == ""
        finally:
            set_file_size_limit(first.process.pid, resource.RLIM_INFINITY)
        await eventually(lambda: revoked.read_text().splitlines() == [line], within=10)
    async with running_roomd(tmp_path, **ENV) as second, httpx.AsyncClient(base_url=second.base_url) as http:
        refused = (await http.post("/weapp/multi_room/get_room_list", params=auth, json={})).json()
        assert refused["code"] == 7 and "revoked" in refused["detail"], refused
    assert not any("Traceback" in printed for printed in first.output + second.output)


async def test_a_second_server_on_the_same_data_dir_is_refused_at_once(tmp_path: Path) -> None:
    async with running_roomd(tmp_path, **ENV) as first:
        second = await failing_roomd(tmp_path, **ENV)
        assert second.returncode == 2, second.output
        assert len(second.output) == 1, second.output
        assert re.fullmatch(
            rf"roomd: server\.data_dir data is in use by process {first.process.pid} since \S+Z "
            r"\(lock file data/roomd\.lock\); stop it or use another data_dir",
            second.output[0],
        ), second.output
        assert second.seconds < 10
        async with httpx.AsyncClient(base_url=first.base_url) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.post("/weapp/multi_room/get_im_login_info", json={})).json()["code"] == 0
    async with running_roomd(tmp_path, **ENV) as third, httpx.AsyncClient(base_url=third.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200
    lock_text = (tmp_path / "data" / "roomd.lock").read_text()
    assert lock_text.startswith(f"{third.process.pid} ")
