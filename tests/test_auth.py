"""Token mode: login with a UserSig, tokens on every route, nobody acts for somebody else."""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import os
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trio
from loguru import logger

from roomd import durable_files
from roomd.auth import revocations
from roomd.auth.revocations import RETRY_INTERVAL, RevocationLog
from roomd.auth.secret_file import SECRET_FILE, SecretFileError, ensure_secret, read_secret
from roomd.auth.tokens import RevocationNotDurable, TokenBook
from roomd.qcloud.usersig import HmacUserSigner, Verified, VerifyFailure
from tests.conftest import Api, Reply, make_settings, open_roomd
from tests.fake_im import FakeIm, start_fake_im
from tests.fake_wechat import FakeWechat, start_fake_wechat

SDK_APP_ID = "1400000123"
SECRET = "token-mode-im-secret"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1_750_000_000.0)


@pytest.fixture
async def token_api(tmp_path: Path, clock: Clock) -> AsyncIterator[Api]:
    async with trio.open_nursery() as nursery:
        fake_im = await start_fake_im(nursery, FakeIm(int(SDK_APP_ID), "admin", secret_key=SECRET))
        settings = make_settings(
            ROOMD_AUTH__MODE="token",
            ROOMD_SERVER__DATA_DIR=str(tmp_path / "data"),
            ROOMD_IM__SDK_APP_ID=SDK_APP_ID,
            ROOMD_IM__SECRET_KEY=SECRET,
            ROOMD_IM__BASE_URL=fake_im.base_url,
        )
        ensure_secret(tmp_path / "data" / SECRET_FILE)  # what `roomd serve` does at start
        async with open_roomd(settings, wall_clock=clock) as api:
            yield api
        nursery.cancel_scope.cancel()


class User:
    def __init__(self, api: Api, user_id: str, token: str) -> None:
        self.api, self.user_id, self.token = api, user_id, token

    async def post(
        self, endpoint: str, body: dict[str, Any], *, as_user: str | None = None, token: str | None = None
    ) -> Reply:
        query = f"userID={as_user or self.user_id}&token={token or self.token}"
        return await self.api.raw(
            f"/weapp/multi_room/{endpoint}?{query}", json.dumps(body).encode(), "application/json"
        )

    def me(self, room_id: str) -> dict[str, str]:
        return {
            "roomID": room_id,
            "userID": self.user_id,
            "userName": self.user_id,
            "userAvatar": "",
            "pushURL": f"rtmp://p.test/live/8888_{self.user_id}",  # token mode: the caller's own stream
        }


async def login(api: Api, user_id: str, clock: Clock) -> User:
    sig = HmacUserSigner(int(SDK_APP_ID), SECRET).make(user_id, now=int(clock.now), expire=86400)
    reply = await api.raw(
        f"/weapp/multi_room/login?sdkAppID={SDK_APP_ID}&accountType=0&userID={user_id}&userSig={sig}",
        b"",
        "application/json",
    )
    assert reply.code == 0, reply.body
    assert reply.body["userID"] == user_id and reply.body["expires"] == int(clock.now) + 7200
    return User(api, user_id, reply.body["token"])


def test_a_v2_usersig_built_by_the_published_algorithm_verifies() -> None:
    key = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
    text = "TLS.identifier:xiaojun\nTLS.sdkappid:1400000000\nTLS.time:1600000000\nTLS.expire:15552000\n"
    sig = base64.b64encode(hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()).decode()
    assert sig == "1Z5PngDjGaufeSiPoBuxdHY7EK3JTdAjMP93S4KvV3M="
    document = {
        "TLS.ver": "2.0",
        "TLS.identifier": "xiaojun",
        "TLS.sdkappid": 1400000000,
        "TLS.time": 1600000000,
        "TLS.expire": 15552000,
        "TLS.sig": sig,
    }
    usersig = (
        base64.b64encode(zlib.compress(json.dumps(document).encode()))
        .decode()
        .replace("+", "*")
        .replace("/", "-")
        .replace("=", "_")
    )
    signer = HmacUserSigner(1400000000, key)
    assert signer.verify(usersig, "xiaojun", now=1600000000 + 15552000) == Verified("xiaojun", 1600000000, 15552000)
    # expiry is integer arithmetic on TLS.time + TLS.expire, not string concatenation
    assert signer.verify(usersig, "xiaojun", now=1600000000 + 15552001) is VerifyFailure.EXPIRED


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda now: HmacUserSigner(int(SDK_APP_ID), "other key").make("alice", now=now, expire=60), "does not match"),
        (lambda now: HmacUserSigner(int(SDK_APP_ID), SECRET).make("alice", now=now - 120, expire=60), "has expired"),
        (lambda now: HmacUserSigner(int(SDK_APP_ID), SECRET).make("bob", now=now, expire=60), "another userID"),
        (lambda now: HmacUserSigner(1400000999, SECRET).make("alice", now=now, expire=60), "another sdkAppID"),
        (lambda now: "eJyrVkrOz0nNzSxJ", "cannot be decoded"),
    ],
)
async def test_login_refuses_each_bad_usersig_with_its_reason(
    token_api: Api, clock: Clock, make: Any, reason: str
) -> None:
    sig = make(int(clock.now))
    reply = await token_api.raw(
        f"/weapp/multi_room/login?sdkAppID={SDK_APP_ID}&userID=alice&userSig={sig}", b"", "application/json"
    )
    assert reply.code == 7 and reply.body["message"] == "鉴权失败"
    assert reason in reply.body["detail"]


async def test_login_for_another_sdk_app_id_is_refused(token_api: Api, clock: Clock) -> None:
    sig = HmacUserSigner(int(SDK_APP_ID), SECRET).make("alice", now=int(clock.now), expire=60)
    reply = await token_api.raw(f"/weapp/multi_room/login?sdkAppID=42&userID=alice&userSig={sig}", b"", "text/plain")
    assert reply.code == 7 and "sdkAppID 42" in reply.body["detail"]


async def test_room_routes_need_a_live_token(token_api: Api, clock: Clock) -> None:
    alice = await login(token_api, "alice", clock)
    assert (await token_api.post("get_room_list")).code == 7  # no token at all
    assert (await alice.post("get_room_list", {}, token="1.bogus")).code == 7
    assert (await alice.post("get_room_list", {}, as_user="bob")).code == 7  # alice's token is not bob's
    assert (await alice.post("get_room_list", {})).code == 0
    clock.now += 7201
    expired = await alice.post("get_room_list", {})
    assert expired.code == 7 and "expired" in expired.body["detail"]


async def test_logout_revokes_the_token(token_api: Api, clock: Clock) -> None:
    alice = await login(token_api, "alice", clock)
    assert (await alice.post("logout", {})).code == 0
    reply = await alice.post("get_room_list", {})
    assert reply.code == 7 and "revoked" in reply.body["detail"]
    again = await login(token_api, "alice", clock)
    assert (await again.post("get_room_list", {})).code == 0


async def test_nobody_acts_for_somebody_else(token_api: Api, clock: Clock) -> None:
    alice, bob, mallory = [await login(token_api, u, clock) for u in ("alice", "bob", "mallory")]
    created = await alice.post("create_room", {**alice.me(""), "roomID": "r1", "roomName": "r"})
    assert created.code == 0
    assert (await bob.post("add_pusher", bob.me("r1"))).code == 0

    async def pushers() -> list[str]:
        reply = await alice.post("get_pushers", {"roomID": "r1"})
        return [p["userID"] for p in reply.body["pushers"]]

    before = await pushers()
    attempts = [
        ("pusher_heartbeat", {"roomID": "r1", "userID": "bob"}),
        ("delete_pusher", {"roomID": "r1", "userID": "bob"}),
        ("delete_pusher", {"roomID": "r1", "userID": "alice"}),
        ("add_pusher", {**bob.me("r1"), "userName": "not really bob"}),
        ("destroy_room", {"roomID": "r1", "userID": "alice"}),
        ("create_room", {"userID": "alice", "roomInfo": "x", "roomID": "r2"}),
    ]
    for endpoint, body in attempts:
        reply = await mallory.post(endpoint, body)
        assert reply.code == 7, (endpoint, reply.body)
        assert "mallory" in reply.body["detail"]
    # bob, with his own valid token, may not destroy alice's room either
    assert (await bob.post("destroy_room", {"roomID": "r1", "userID": "bob"})).body[
        "message"
    ] == "不是房间主人，无法销毁房间"
    assert await pushers() == before == ["alice", "bob"]
    assert (await alice.post("get_pushers", {"roomID": "r2"})).code == 3


async def test_get_im_login_info_in_token_mode_returns_a_working_token(token_api: Api) -> None:
    reply = await token_api.post("get_im_login_info", {"userIDPrefix": "android"})
    assert reply.code == 0 and reply.body["token"] and reply.body["expires"] > 0
    user = User(token_api, reply.body["userID"], reply.body["token"])
    assert (await user.post("get_push_url", {"userID": user.user_id})).code == 0


async def test_utils_get_login_info_in_token_mode_is_only_for_yourself(token_api: Api, clock: Clock) -> None:
    alice = await login(token_api, "alice", clock)
    assert (await token_api.get("/weapp/utils/get_login_info?userID=alice")).code == 7
    own = await token_api.get(f"/weapp/utils/get_login_info?userID=alice&token={alice.token}")
    assert own.code == 0 and own.body["userSig"]


async def test_login_works_in_open_mode_too(tmp_path: Path) -> None:
    settings = make_settings(ROOMD_SERVER__DATA_DIR=str(tmp_path / "data"))
    ensure_secret(tmp_path / "data" / SECRET_FILE)
    async with open_roomd(settings) as api:
        sig = api.ctx.user_sig("alice")
        reply = await api.raw(f"/weapp/multi_room/login?userID=alice&userSig={sig}", b"", "application/json")
        assert reply.code == 0 and reply.body["token"]


async def test_wechat_code_becomes_the_user_id(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        wechat = await start_fake_wechat(nursery, FakeWechat("wx-app", "wx-secret", {"good-code": "oAbC_123-xyz"}))
        settings = make_settings(
            ROOMD_WECHAT__APP_ID="wx-app",
            ROOMD_WECHAT__APP_SECRET="wx-secret",
            ROOMD_WECHAT__BASE_URL=wechat.base_url,
        )
        async with open_roomd(settings) as api:
            good = await api.post("get_im_login_info", {"userIDPrefix": "weixin", "code": "good-code"})
            assert good.code == 0 and good.body["userID"] == "oAbC_123-xyz"
            bad = await api.post("get_im_login_info", {"userIDPrefix": "weixin", "code": "stale-code"})
            assert bad.code == 0 and bad.body["userID"].startswith("weixin_")
            no_code = await api.post("get_im_login_info", {"userIDPrefix": "weixin"})
            assert no_code.body["userID"].startswith("weixin_")
        assert [r.query["js_code"] for r in wechat.requests] == ["good-code", "stale-code"]
        assert all(
            r.query["appid"] == "wx-app" and r.query["grant_type"] == "authorization_code" for r in wechat.requests
        )
        wechat.server.stop_listening()  # type: ignore[union-attr]
        async with open_roomd(settings) as api:
            down = await api.post("get_im_login_info", {"userIDPrefix": "weixin", "code": "good-code"})
            assert down.code == 0 and down.body["userID"].startswith("weixin_")
        nursery.cancel_scope.cancel()


# --- the token book: strict parsing, durable revocations ----------------------------

NOW = 1_750_000_000


def _book(tmp_path: Path, **log_options: Any) -> TokenBook:
    path = tmp_path / "revoked_tokens"
    return TokenBook(b"k" * 32, ttl=7200, revocations=RevocationLog(path, now=NOW, **log_options))


@pytest.mark.parametrize(
    "spelling",
    [
        lambda t: "0" + t,
        lambda t: "²" + t,
        lambda t: "１" + t[1:],  # noqa: RUF001 -- a fullwidth digit, on purpose
        lambda t: t.replace(".", "\uff0e", 1),
        lambda t: t[:-1] + "é",
        lambda t: t + "=",
        lambda t: (
            t[:-1]
            + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(t[-1]) | 2
            ]
        ),
        lambda t: t.split(".")[0] + "." + t.split(".")[1].upper() + "." + t.split(".")[2],
        lambda t: "9" * 13 + t[t.index(".") :],
        lambda t: t + ".",
        lambda t: t.replace("_", "/").replace("-", "+") if ("_" in t or "-" in t) else t + "\n",
        lambda t: "",
        lambda t: "...",
    ],
)
def test_a_token_has_one_spelling_and_any_other_is_refused_without_an_exception(tmp_path: Path, spelling: Any) -> None:
    book = _book(tmp_path)
    # a random nonce may have no letters, and so no upper-case spelling: take one that has
    token = next(t for t in (book.issue("alice", now=NOW).token for _ in range(100)) if spelling(t) != t)
    assert book.check("alice", token, now=NOW) is None
    other = spelling(token)
    assert other != token
    why = book.check("alice", other, now=NOW)
    assert why is not None and why.startswith("the token")


async def test_a_revocation_holds_for_the_token_and_survives_a_new_book(tmp_path: Path) -> None:
    book = _book(tmp_path)
    token, kept = book.issue("alice", now=NOW).token, book.issue("alice", now=NOW).token
    await book.revoke(token, now=NOW)
    assert book.check("alice", token, now=NOW) == "the token was revoked by logout"
    assert book.check("alice", kept, now=NOW) is None
    reopened = _book(tmp_path)
    assert reopened.check("alice", token, now=NOW) == "the token was revoked by logout"
    assert reopened.check("alice", kept, now=NOW) is None
    assert (tmp_path / "revoked_tokens").read_text().count("\n") == 1


async def test_concurrent_logouts_share_an_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(durable_files.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    book = _book(tmp_path)
    tokens = [book.issue(f"user{i}", now=NOW).token for i in range(200)]
    async with trio.open_nursery() as nursery:
        for token in tokens:
            nursery.start_soon(partial(book.revoke, token, now=NOW))
    assert len(fsyncs) <= 3
    assert (tmp_path / "revoked_tokens").read_text().count("\n") == 200
    assert all(_book(tmp_path).check(f"user{i}", t, now=NOW) is not None for i, t in enumerate(tokens))


async def test_a_failed_write_keeps_the_token_revoked_and_is_retried_with_the_next_logout(tmp_path: Path) -> None:
    book = _book(tmp_path)
    first, second = book.issue("alice", now=NOW).token, book.issue("bob", now=NOW).token
    (tmp_path / "revoked_tokens").mkdir()  # any write to it fails
    with pytest.raises(RevocationNotDurable, match="could not be written"):
        await book.revoke(first, now=NOW)
    assert book.check("alice", first, now=NOW) == "the token was revoked by logout"
    (tmp_path / "revoked_tokens").rmdir()
    await book.revoke(second, now=NOW)
    reopened = _book(tmp_path)
    assert reopened.check("alice", first, now=NOW) is not None and reopened.check("bob", second, now=NOW) is not None


async def test_expired_revocations_are_dropped_by_the_first_write_after_start_and_when_the_file_grows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "revoked_tokens"
    live, expired = "a" * 64, "b" * 64
    found = f"{expired} {NOW - 1}\n{live} {NOW + 10}\nnot a line\n{'c' * 40}"  # the last line cut by a crash
    path.write_text(found)
    log = RevocationLog(path, now=NOW, compact_min_lines=8)
    assert path.read_text() == found  # the start only reads: the rewrite waits for a worker thread
    assert live in log and expired not in log
    await log.add("0" * 64, NOW + 5, now=NOW)
    assert path.read_text() == f"{live} {NOW + 10}\n{'0' * 64} {NOW + 5}\n"
    for i in range(1, 6):
        await log.add(f"{i:064x}", NOW + 5, now=NOW)
    assert path.read_text().count("\n") == 7
    await log.add("d" * 64, NOW + 100, now=NOW + 20)  # the other 7 have expired by now
    assert path.read_text() == f"{'d' * 64} {NOW + 100}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["revoked_tokens"]  # noqa: ASYNC240 -- a test's own directory


async def test_a_logout_appends_one_line_and_never_rewrites_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rewrites: list[Path] = []
    real_replace = revocations.replace_durably
    monkeypatch.setattr(revocations, "replace_durably", lambda p, d: (rewrites.append(p), real_replace(p, d))[1])
    path = tmp_path / "revoked_tokens"
    path.write_text(f"{'a' * 64} {NOW + 10}\n")
    log = RevocationLog(path, now=NOW)
    inode = path.stat().st_ino
    for i in range(50):
        await log.add(f"{i:064x}", NOW + 60, now=NOW)
    assert rewrites == [] and path.stat().st_ino == inode
    assert path.read_text().splitlines()[-1] == f"{49:064x} {NOW + 60}" and path.read_text().count("\n") == 51


async def test_a_line_cut_by_a_crash_gets_no_line_glued_to_it_even_when_compaction_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room_for_a_temporary_file(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(revocations, "replace_durably", no_room_for_a_temporary_file)
    path = tmp_path / "revoked_tokens"
    path.write_text(f"{'a' * 64} {NOW + 10}\n{'b' * 64} {str(NOW)[:4]}")  # the last line cut within its expiry
    log = RevocationLog(path, now=NOW)
    await log.add("c" * 64, NOW + 30, now=NOW)  # the compaction fails: the line is appended after all
    reopened = RevocationLog(path, now=NOW)
    assert "a" * 64 in reopened and "c" * 64 in reopened


async def test_revocation_files_are_written_and_compacted_off_the_trio_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trio_thread = threading.get_ident()
    threads: list[tuple[str, int]] = []

    def recorded(name: str, write: Callable[[Path, bytes], None]) -> Callable[[Path, bytes], None]:
        def on_some_thread(path: Path, data: bytes) -> None:
            threads.append((name, threading.get_ident()))
            write(path, data)

        return on_some_thread

    monkeypatch.setattr(revocations, "append_durably", recorded("append", revocations.append_durably))
    monkeypatch.setattr(revocations, "replace_durably", recorded("replace", revocations.replace_durably))
    path = tmp_path / "revoked_tokens"
    path.write_text(f"{'e' * 64} {NOW - 1}\n")  # expired: the first write compacts
    log = RevocationLog(path, now=NOW, compact_min_lines=4)
    for i in range(6):
        await log.add(f"{i:064x}", NOW + (1 if i < 3 else 60), now=NOW + (2 if i >= 3 else 0))
    assert {name for name, _ in threads} == {"append", "replace"}
    assert all(ident != trio_thread for _, ident in threads)


def test_revocation_lines_are_read_whatever_their_spacing_and_lines_that_are_not_revocations_are_reported(
    tmp_path: Path,
) -> None:
    book = _book(tmp_path)
    spaced, glued = book.issue("alice", now=NOW).token, book.issue("bob", now=NOW).token
    lines = [f"  {_token_id(spaced)} {NOW + 7200}\r", f"x{_token_id(glued)} {NOW + 7200}", "", "garbage"]
    (tmp_path / "revoked_tokens").write_text("\n".join(lines) + "\n")
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(message.record["message"]), level="WARNING")
    try:
        reopened = _book(tmp_path)
    finally:
        logger.remove(sink)
    assert reopened.check("alice", spaced, now=NOW) == "the token was revoked by logout"
    assert reopened.check("bob", glued, now=NOW) is None  # its line is not one roomd wrote: said so below
    assert warnings == [
        f"2 of 4 lines in {tmp_path / 'revoked_tokens'} are not revocations roomd wrote and are dropped: any "
        "logout they recorded no longer holds"
    ]


def _token_id(token: str) -> str:
    return base64.urlsafe_b64decode(token.split(".")[2] + "=").hex()


def test_a_revocation_written_before_strict_tokens_still_holds(tmp_path: Path) -> None:
    book = _book(tmp_path)
    token = book.issue("alice", now=NOW).token
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
    (tmp_path / "revoked_tokens").write_text(f"{digest} {NOW + 7200}\n")
    assert _book(tmp_path).check("alice", token, now=NOW) == "the token was revoked by logout"


async def test_logout_that_cannot_be_written_answers_12_and_the_token_stays_refused(
    token_api: Api, clock: Clock, tmp_path: Path
) -> None:
    alice = await login(token_api, "alice", clock)
    (tmp_path / "data" / "revoked_tokens").mkdir(parents=True)
    reply = await alice.post("logout", {})
    assert reply.status == 503 and reply.code == 12 and "could not be written" in reply.body["detail"]
    refused = await alice.post("get_room_list", {})
    assert refused.code == 7 and "revoked" in refused.body["detail"]


async def test_tokens_with_non_ascii_or_padded_spellings_are_code_7_not_a_crash(token_api: Api, clock: Clock) -> None:
    alice = await login(token_api, "alice", clock)
    for token in ("²" + alice.token, "１" + alice.token[1:], "0" + alice.token):  # noqa: RUF001 -- fullwidth, on purpose
        reply = await alice.post("get_room_list", {}, token=quote(token))
        assert reply.code == 7 and reply.body["detail"].startswith("the token is malformed"), reply.body


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        TokenBook(b"", ttl=60)


# --- revocations whose write failed are written later; a secret file is one roomd made ----------


class FailingDisk:
    """The revocation log's appends, failing with ENOSPC while `full`; run inline instead of on a worker
    thread, so that the autojump clock cannot pass while one runs and says exactly when each was tried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        self.tries: list[float] = []
        self._append = revocations.append_durably

        async def inline(function: Callable[..., Any], *args: Any) -> Any:
            return function(*args)

        monkeypatch.setattr(trio.to_thread, "run_sync", inline)
        monkeypatch.setattr(revocations, "append_durably", self.append)

    def append(self, path: Path, data: bytes) -> None:
        self.tries.append(trio.current_time())
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._append(path, data)


async def test_a_revocation_whose_write_failed_is_tried_every_second_until_it_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    disk = FailingDisk(monkeypatch)
    book = _book(tmp_path)
    token = book.issue("alice", now=NOW).token
    async with trio.open_nursery() as nursery:
        nursery.start_soon(book.keep_revocations_written, lambda: NOW)
        start = trio.current_time()
        with pytest.raises(RevocationNotDurable, match="could not be written"):
            await book.revoke(token, now=NOW)
        assert book.check("alice", token, now=NOW) == "the token was revoked by logout"
        await trio.sleep(3.5)
        assert [t - start for t in disk.tries] == pytest.approx([0, 1, 2, 3])
        assert _book(tmp_path).check("alice", token, now=NOW) is None  # a restart now would let it in
        disk.full = False
        await trio.sleep(RETRY_INTERVAL)
        assert _book(tmp_path).check("alice", token, now=NOW) == "the token was revoked by logout"
        await trio.sleep(60)
        assert [t - start for t in disk.tries] == pytest.approx([0, 1, 2, 3, 4])  # on disk: no more tries
        nursery.cancel_scope.cancel()
    assert len(disk.tries) == 5 and (tmp_path / "revoked_tokens").read_text().count("\n") == 1


async def test_a_revocation_whose_token_expired_before_the_disk_took_it_is_tried_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    disk = FailingDisk(monkeypatch)
    book = _book(tmp_path)
    issued = book.issue("alice", now=NOW)
    wall = Clock(NOW)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(book.keep_revocations_written, wall)
        with pytest.raises(RevocationNotDurable):
            await book.revoke(issued.token, now=NOW)
        await trio.sleep(2.5)
        assert len(disk.tries) == 3
        wall.now = issued.expires + 1  # the token is refused as expired now: its line is not needed
        await trio.sleep(60)
        assert len(disk.tries) == 3
        nursery.cancel_scope.cancel()
    assert len(disk.tries) == 3


async def test_a_revocation_still_unwritten_when_the_server_stops_gets_one_more_try_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    disk = FailingDisk(monkeypatch)
    book = _book(tmp_path)
    first, second = book.issue("alice", now=NOW).token, book.issue("bob", now=NOW).token
    async with trio.open_nursery() as nursery:
        nursery.start_soon(book.keep_revocations_written, lambda: NOW)
        start = trio.current_time()
        with pytest.raises(RevocationNotDurable):
            await book.revoke(first, now=NOW)
        disk.full = False  # room again, but the next retry is not due before the stop
        await trio.sleep(RETRY_INTERVAL / 2)
        nursery.cancel_scope.cancel()
    assert [t - start for t in disk.tries] == pytest.approx([0, RETRY_INTERVAL / 2])
    assert _book(tmp_path).check("alice", first, now=NOW) == "the token was revoked by logout"
    # a disk still full at the stop: one try, and the stop does not wait for the disk
    disk.full = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(book.keep_revocations_written, lambda: NOW)
        start = trio.current_time()
        with pytest.raises(RevocationNotDurable):
            await book.revoke(second, now=NOW)
        nursery.cancel_scope.cancel()
    assert len(disk.tries) == 4 and trio.current_time() == start
    assert _book(tmp_path).check("bob", second, now=NOW) is None


MADE_SECRET = "0123456789abcdef" * 4  # the form make_secret writes: 64 lowercase hex characters


@pytest.mark.parametrize(
    "content",
    [MADE_SECRET[:32], MADE_SECRET[:63] + "\n", MADE_SECRET + "0", MADE_SECRET.upper(), "k" * 64, "k" * 200],
    ids=["cut-to-32", "cut-to-63", "65", "upper-case", "not-hex", "long"],
)
def test_a_secret_file_that_is_not_a_whole_made_secret_is_corrupt(tmp_path: Path, content: str) -> None:
    path = tmp_path / SECRET_FILE
    path.write_text(content)
    with pytest.raises(SecretFileError, match=r"is corrupt \(\d+ bytes\); remove it to make a new one"):
        read_secret(path)
    with pytest.raises(SecretFileError, match="is corrupt"):
        ensure_secret(path)
    with pytest.raises(SecretFileError, match="is corrupt"):
        TokenBook.from_settings(make_settings(ROOMD_SERVER__DATA_DIR=str(tmp_path)))
    assert path.read_text() == content  # left for the operator to look at


def test_a_made_secret_reads_back_and_an_operators_secret_keeps_its_own_rule(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE
    made = ensure_secret(path)
    assert len(made) == 64 and read_secret(path) == made
    path.write_text(MADE_SECRET + "\n")  # written by hand, with the newline an editor adds
    assert read_secret(path) == MADE_SECRET.encode()
    settings = make_settings(ROOMD_SERVER__DATA_DIR=str(tmp_path / "none"), ROOMD_AUTH__TOKEN_SECRET="operator-key")
    book = TokenBook.from_settings(settings)  # not a made secret, and not held to that form
    assert book.check("alice", book.issue("alice", now=NOW).token, now=NOW) is None
