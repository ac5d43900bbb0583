"""Settings layering and the one-line errors that stop a start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from roomd.cli import settings_for
from roomd.config import ConfigError, KindSettings, Settings, load_settings
from roomd.supervisor import node_command

DEFAULT_TOML = Path(__file__).parent.parent / "roomd" / "config" / "default.toml"


def test_embedded_defaults() -> None:
    s = load_settings()
    assert (s.server.host, s.server.port, s.server.route_prefix) == ("127.0.0.1", 5757, "/weapp")
    assert s.kinds == {
        "multi_room": KindSettings(6, 20, 30, True),
        "double_room": KindSettings(2, 20, 30, True),
        "live_room": KindSettings(4, 20, 30, True, max_audiences=30),
    }
    assert s.im.sdk_app_id == 0 and s.auth.mode == "open"


def test_shipped_default_toml_equals_the_embedded_defaults() -> None:
    assert load_settings(config_path=DEFAULT_TOML) == Settings()


def test_layers_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "roomd.toml"
    toml.write_text(
        '[server]\nport = 6000\nhost = "0.0.0.0"\n'
        "[kinds.multi_room]\nmax_members = 9\n"
        "[kinds.webinar]\nmax_members = 50\nheartbeat_timeout = 45\n"
    )
    s = load_settings(
        config_path=toml,
        environ={
            "ROOMD_SERVER__PORT": "7000",
            "ROOMD_KINDS__MULTI_ROOM__MAX_MEMBERS": "12",
            "ROOMD_KINDS__DOUBLE_ROOM__CREATOR_LEAVE_CLOSES_ROOM": "false",
            "PATH": "/bin",
        },
        overrides={"server": {"port": 8000}},
    )
    assert s.server.port == 8000 and s.server.host == "0.0.0.0"
    assert s.kinds["multi_room"].max_members == 12
    assert s.kinds["double_room"].creator_leave_closes_room is False
    assert s.kinds["webinar"] == KindSettings(max_members=50, heartbeat_timeout=45.0)


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("[server]\nprot = 1\n", {}, "server.prot: unknown key"),
        ("[sever]\nport = 1\n", {}, "sever: unknown section"),
        ('[server]\nport = "x"\n', {}, "server.port: expected an integer, got 'x'"),
        ("[server]\nport = 70000\n", {}, "server.port: must be 0..65535"),
        ('[auth]\nmode = "magic"\n', {}, "auth.mode: must be 'open' or 'token'"),
        ("[kinds.multi_room]\nmax_members = 0\n", {}, "kinds.multi_room.max_members: must be 1 to 200"),
        ("[kinds.multi_room]\nmax_members = 201\n", {}, "kinds.multi_room.max_members: must be 1 to 200"),
        ("[kinds.Bad-Name]\nmax_members = 3\n", {}, "kinds.Bad-Name: a kind name must be"),
        ("[kinds.multi_room]\ncolor = 1\n", {}, "kinds.multi_room.color: unknown key"),
        (
            "",
            {"ROOMD_IM__TIMEOUT": "soon"},
            "im.timeout: expected a number, got 'soon' (environment ROOMD_IM__TIMEOUT)",
        ),
        ("", {"ROOMD_PORT": "1"}, "ROOMD_PORT: not a setting"),
        ("", {"ROOMD_KINDS__MULTI_ROOM__CREATOR_LEAVE_CLOSES_ROOM": "maybe"}, "expected true or false"),
        ('[im]\nbase_url = "ftp://x"\n', {}, "im.base_url: must be an http:// or https:// URL"),
        ("[server\n", {}, "is not valid TOML"),
        ('[cluster]\nredis_url = "http://r:6379"\n', {}, "cluster.redis_url: must be a redis://"),
        ('[cluster]\nredis_url = "redis+sentinel://s:26379"\n', {}, "cluster.redis_url: expected redis"),
        ('[cluster]\nredis_url = "redis+sentinel://s/mymaster"\n', {}, "cluster.redis_url: 's' is not host:port"),
        ('[cluster]\nredis_url = "redis+sentinel://s:1/m/x"\n', {}, "cluster.redis_url: 'x' is not a database"),
        ("[cluster]\nlease_ms = 100\n", {}, "cluster.lease_ms: must be at least 500"),
        ("[cluster]\nrenew_interval = 2.0\n", {}, "cluster.renew_interval: must be positive and at most half"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, toml: str, environ: dict[str, str], message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_settings(config_path=path, environ=environ)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[webhooks]\nurls = "http://u:SECRETPW@h/x?token=SECRETQ"\n', "webhooks.urls: expected a list of strings"),
        ('[webhooks]\nurls = ["http://u:SECRETPW@h/x", 5]\n', "webhooks.urls: expected a list of strings"),
        ('[auth]\nadmin_key = ["SECRETADMIN"]\n', "auth.admin_key: expected a string"),
        ("[im]\nsecret_key = 12345\n", "im.secret_key: expected a string"),
        ('[cluster]\nredis_url = ["redis://:SECRETPW@r"]\n', "cluster.redis_url: expected a string"),
    ],
)
def test_a_mistyped_secret_is_not_repeated_in_the_error(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as raised:
        load_settings(config_path=path, environ={})
    assert str(raised.value).startswith(f"{message}, got a ") and "not shown: it may be a secret" in str(raised.value)
    assert "SECRET" not in str(raised.value) and "12345" not in str(raised.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_path=tmp_path / "nope.toml")


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nport = -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "roomd.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["roomd: configuration error: server.port: must be 0..65535, got -1"]


def test_cli_usersig_prints_a_verifiable_sig() -> None:
    env = {"ROOMD_IM__SECRET_KEY": "k", "ROOMD_IM__SDK_APP_ID": "1400000001", "PATH": "/usr/bin:/bin"}
    made = subprocess.run(
        [sys.executable, "-m", "roomd.cli", "usersig", "alice"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert made.returncode == 0
    sig = made.stdout.strip()
    checked = subprocess.run(
        [sys.executable, "-m", "roomd.cli", "verify-usersig", sig, "alice"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert checked.returncode == 0 and checked.stdout.startswith("verifies")
    wrong = subprocess.run(
        [sys.executable, "-m", "roomd.cli", "verify-usersig", sig, "bob"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert wrong.returncode == 1 and "another userID" in wrong.stdout


def test_the_later_servers_name_for_creator_leave_closes_room_is_accepted(tmp_path: Path) -> None:
    toml = tmp_path / "roomd.toml"
    toml.write_text("[kinds.live_room]\ncreator_can_destroy_room = false\n")
    assert load_settings(config_path=toml).kinds["live_room"].creator_leave_closes_room is False
    from_env = load_settings(environ={"ROOMD_KINDS__MULTI_ROOM__CREATOR_CAN_DESTROY_ROOM": "false"})
    assert from_env.kinds["multi_room"].creator_leave_closes_room is False
    toml.write_text("[kinds.live_room]\ncreator_can_destroy_room = false\ncreator_leave_closes_room = true\n")
    with pytest.raises(ConfigError, match=re.escape("kinds.live_room.creator_can_destroy_room: the same setting as")):
        load_settings(config_path=toml)


def test_cli_usersig_without_a_key_says_which_setting_is_missing() -> None:
    env = {"PATH": "/usr/bin:/bin"}  # no ROOMD_IM__SECRET_KEY, no private key
    for command in (["usersig", "alice"], ["verify-usersig", "eJx", "alice"]):
        result = subprocess.run(
            [sys.executable, "-m", "roomd.cli", *command], capture_output=True, text=True, timeout=60, env=env
        )
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            "roomd: no key to sign or check userSigs with: set im.secret_key (UserSig v2) "
            "or im.private_key / im.private_key_file (v1)"
        ]


def test_the_shipped_log_comments_name_the_three_kinds_of_files_and_their_share() -> None:
    comments = {
        line.split("=")[0].strip(): line.partition("#")[2]
        for line in DEFAULT_TOML.read_text().split("[log]\n")[1].split("\n[")[0].splitlines()
        if "=" in line.partition("#")[0]
    }
    assert all(kind in comments["dir"] for kind in ("response/", "app/", "error/"))
    assert "a third" in comments["max_bytes"] and "half" not in comments["max_bytes"]  # as configure_logging splits it


@pytest.fixture
def roomd_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """os.environ without ROOMD_* settings: what the cli reads is what the test sets."""
    for name in [name for name in os.environ if name.startswith("ROOMD_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_with_workers_the_supervisor_and_each_node_keep_an_equal_share_of_log_max_bytes(
    roomd_environment: pytest.MonkeyPatch,
) -> None:
    max_bytes = 40 << 20
    roomd_environment.setenv("ROOMD_LOG__MAX_BYTES", str(max_bytes))
    roomd_environment.setenv("ROOMD_CLUSTER__REDIS_URL", "redis://127.0.0.1:6379/0")
    serve = ["serve", "--workers", "3"]
    supervisor = settings_for(serve)
    # each node as the supervisor starts it: its command line, less the interpreter and `-m roomd.cli`
    nodes = [settings_for(node_command(serve, index, 5757, workers=3)[3:]) for index in range(3)]
    assert supervisor.log.max_bytes == max_bytes // 4 and supervisor.log.dir == "logs"
    assert [node.log.max_bytes for node in nodes] == [max_bytes // 4] * 3
    assert [node.log.dir for node in nodes] == [str(Path("logs") / f"node-{index}") for index in range(3)]
    assert supervisor.log.max_bytes + sum(node.log.max_bytes for node in nodes) <= max_bytes
    assert settings_for(["serve"]).log.max_bytes == max_bytes  # one process keeps all of it


def test_workers_whose_share_of_log_max_bytes_would_be_below_1_mib_is_a_configuration_error(
    roomd_environment: pytest.MonkeyPatch,
) -> None:
    roomd_environment.setenv("ROOMD_LOG__MAX_BYTES", str(3 << 20))
    roomd_environment.setenv("ROOMD_CLUSTER__REDIS_URL", "redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError) as raised:  # `roomd serve` prints it as one line and exits with 2
        settings_for(["serve", "--workers", "3"])
    assert str(raised.value) == (
        "log.max_bytes: must be at least 4194304 with --workers 3 "
        "(the supervisor and each node keep an equal share of it, at least 1 MiB each)"
    )
    assert settings_for(["serve", "--workers", "2"]).log.max_bytes == 1 << 20
