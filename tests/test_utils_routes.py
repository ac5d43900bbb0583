"""Log files and the settings check: confined to log.dir, guarded by the admin key."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from roomd.web import utils_routes
from tests.conftest import Api, make_settings, open_roomd

ADMIN = {"Authorization": "Bearer let-me-in"}


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    (logs / "response").mkdir(parents=True)
    (logs / "error").mkdir()
    (logs / "response" / "response-2026-11-29-10.log").write_text("POST /weapp/multi_room/create_room ...\n")
    (logs / "error" / "error-2026-11-29-10.log").write_text("WARNING something\n")
    (tmp_path / "secret.txt").write_text("private")
    (logs / "response" / "escape.log").symlink_to(tmp_path / "secret.txt")
    return logs


@pytest.fixture
async def ops_api(log_dir: Path) -> AsyncIterator[Api]:
    settings = make_settings(ROOMD_LOG__DIR=str(log_dir), ROOMD_AUTH__ADMIN_KEY="let-me-in")
    async with open_roomd(settings) as api:
        yield api


async def get(api: Api, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    response = await api.http.get(path, headers=headers or {})
    return response.status_code, response.content


async def test_log_file_list_and_a_normal_file_is_served(ops_api: Api) -> None:
    listing = await ops_api.http.get("/weapp/utils/logfilelist", headers=ADMIN)
    files = listing.json()["files"]
    assert [f["file"] for f in files] == ["error/error-2026-11-29-10.log", "response/response-2026-11-29-10.log"]
    status, body = await get(ops_api, "/weapp/utils/getlogfile?file=response/response-2026-11-29-10.log", ADMIN)
    assert status == 200 and body == b"POST /weapp/multi_room/create_room ...\n"


class ThreadRecorder:
    """Wraps the route's file system calls and records the thread each one ran on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, after_first_read: Callable[[], None] = lambda: None) -> None:
        self.calls: list[tuple[str, int]] = []
        self._after_first_read = after_first_read
        for name in ("log_files", "log_file_path"):
            monkeypatch.setattr(utils_routes, name, self._recorded(name, getattr(utils_routes, name)))
        open_with_size = utils_routes._open_with_size
        monkeypatch.setattr(utils_routes, "_open_with_size", lambda *args: self._opened(*open_with_size(*args)))

    def _recorded(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def on_some_thread(*args: Any) -> Any:
            self.calls.append((name, threading.get_ident()))
            return function(*args)

        return on_some_thread

    def _opened(self, file: BinaryIO, size: int) -> tuple[Any, int]:
        self.calls.append(("open", threading.get_ident()))
        recorder = self

        class RecordedFile:
            def read(self, size: int) -> bytes:
                recorder.calls.append(("read", threading.get_ident()))
                data = file.read(size)
                if [name for name, _ in recorder.calls].count("read") == 1:
                    recorder._after_first_read()
                return data

            def close(self) -> None:
                recorder.calls.append(("close", threading.get_ident()))
                file.close()

        return RecordedFile(), size

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def threads(self) -> set[int]:
        return {ident for _, ident in self.calls}


async def test_log_files_are_listed_checked_opened_and_read_off_the_trio_thread(
    ops_api: Api, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"".join(b"POST /weapp/multi_room/pusher_heartbeat line %06d\n" % i for i in range(20_000))
    (log_dir / "response" / "response-2026-11-29-11.log").write_bytes(content)  # about 1 MB: many chunks
    recorder = ThreadRecorder(monkeypatch)
    listing = await ops_api.http.get("/weapp/utils/logfilelist", headers=ADMIN)
    assert "response/response-2026-11-29-11.log" in [f["file"] for f in listing.json()["files"]]
    status, body = await get(ops_api, "/weapp/utils/getlogfile?file=response/response-2026-11-29-11.log", ADMIN)
    assert status == 200 and body == content
    names = recorder.names()
    assert names[:3] == ["log_files", "log_file_path", "open"] and names[-1] == "close"
    assert names.count("read") >= len(content) // utils_routes.CHUNK_BYTES  # in chunks, not whole
    assert threading.get_ident() not in recorder.threads()


async def test_a_log_file_still_being_written_is_sent_as_it_was_when_opened(
    ops_api: Api, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = log_dir / "response" / "response-2026-11-29-12.log"
    content = b"x" * (3 * utils_routes.CHUNK_BYTES + 5) + b"\n"
    path.write_bytes(content)

    def more_lines() -> None:
        with path.open("ab") as file:
            file.write(b"written while the file was being sent\n" * 10_000)

    ThreadRecorder(monkeypatch, after_first_read=more_lines)
    status, body = await get(ops_api, "/weapp/utils/getlogfile?file=response/response-2026-11-29-12.log", ADMIN)
    assert status == 200 and body == content
    assert path.stat().st_size > len(content)  # the file did grow meanwhile


async def test_head_of_a_log_file_opens_nothing(ops_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = ThreadRecorder(monkeypatch)
    response = await ops_api.http.head(
        "/weapp/utils/getlogfile?file=response/response-2026-11-29-10.log", headers=ADMIN
    )
    assert response.status_code == 200 and response.content == b""
    assert recorder.names() == ["log_file_path"]


@pytest.mark.parametrize(
    "name",
    [
        "../secret.txt",
        "response/../../secret.txt",
        "%2e%2e%2fsecret.txt",
        "%252e%252e%252fsecret.txt",
        "..%2fsecret.txt",
        "/etc/passwd",
        "response/escape.log",
        "response\\..\\..\\secret.txt",
        ".",
        "",
        "app%0a",  # a line end after a plain name
        "response/response-2026-11-29-10.log%0a",
    ],
)
async def test_every_traversal_attempt_is_refused(ops_api: Api, name: str) -> None:
    response = await ops_api.http.get(f"/weapp/utils/getlogfile?file={name}", headers=ADMIN)
    body = response.json()
    assert response.status_code == 400 and body["code"] == 1
    assert b"private" not in response.content


async def test_a_missing_log_file_is_404(ops_api: Api) -> None:
    status, _ = await get(ops_api, "/weapp/utils/getlogfile?file=response/response-1999-01-01-00.log", ADMIN)
    assert status == 404


@pytest.mark.parametrize("path", ["logfilelist", "getlogfile?file=error/error-2026-11-29-10.log", "check_config"])
async def test_ops_routes_need_the_admin_key(ops_api: Api, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "let-me-in"}):
        response = await ops_api.http.get(f"/weapp/utils/{path}", headers=headers)
        assert response.json()["code"] == 7


async def test_check_config_lists_what_is_missing(ops_api: Api) -> None:
    response = await ops_api.http.get("/weapp/utils/check_config", headers=ADMIN)
    body = response.json()
    keys = {p["key"] for p in body["problems"]}
    assert body["code"] == 0 and body["clean"] is False
    # the test settings have live, UserSig and admin keys, but no IM account
    assert keys == {"im.sdk_app_id"}


def test_check_config_command(tmp_path: Path) -> None:
    clean = tmp_path / "clean.toml"
    clean.write_text(
        f'[log]\ndir = "{tmp_path / "logs"}"\n'
        '[live]\nbizid = 1234\npush_secret_key = "k"\n'
        '[im]\nsdk_app_id = 1400000000\nsecret_key = "s"\n'
        '[auth]\nadmin_key = "a"\n'
    )
    ok = subprocess.run(
        [sys.executable, "-m", "roomd.cli", "check-config", "--config", str(clean)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert ok.returncode == 0 and "no problems found" in ok.stdout
    bare = subprocess.run(
        [sys.executable, "-m", "roomd.cli", "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert bare.returncode == 1
    assert "im.sdk_app_id: is 0" in bare.stdout and "live.push_secret_key: is empty" in bare.stdout
    assert (
        "auth.admin_key: is empty: the ops routes (log files, /metrics, /debug/actors) answer any client "
        "from ops.allow (127.0.0.0/8, ::1/128) without a key" in bare.stdout
    )
