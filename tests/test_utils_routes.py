"""Log files and the settings check: confined to log.dir, guarded by the admin key."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
