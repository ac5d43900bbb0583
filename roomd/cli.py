"""The `roomd` command line: serve, usersig, verify-usersig, check-config.

A configuration problem is one line on stderr and exit status 2; so is a
data_dir another process holds, or a token secret that is corrupt or cannot
be made (`serve` locks the data_dir and makes the secret before it starts).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio

from roomd.auth.revocations import REVOKED_FILE, check_revocations_readable
from roomd.auth.secret_file import SECRET_FILE, SecretFileError, ensure_secret
from roomd.auth.signers import choose_user_signer
from roomd.config import ConfigError, Settings, load_settings
from roomd.config.report import config_problems
from roomd.data_dir_lock import DataDirLock, DataDirUnavailable, lock_data_dir
from roomd.logs.setup import configure_logging, flush_logs
from roomd.qcloud.usersig import VerifyFailure
from roomd.supervisor import CANNOT_START, log_share, stop_with_the_supervisor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomd", description="Room server for RTCRoom clients.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server until SIGINT/SIGTERM")
    serve.add_argument("--config", help="TOML settings file")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on, 0 = any free one (server.port)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run N cluster nodes on this port (SO_REUSEPORT), restarted when they die; N > 1 needs "
        "cluster.redis_url (default 1: this process serves)",
    )
    serve.add_argument("--node-index", type=int, help=argparse.SUPPRESS)  # a node started by --workers
    serve.add_argument("--node-count", type=int, help=argparse.SUPPRESS)  # ... and that --workers N

    usersig = commands.add_parser("usersig", help="print a UserSig for USERID")
    usersig.add_argument("user_id", metavar="USERID")
    usersig.add_argument("--config", help="TOML settings file")

    verify = commands.add_parser("verify-usersig", help="say whether SIG verifies for USERID, and why not")
    verify.add_argument("sig", metavar="SIG")
    verify.add_argument("user_id", metavar="USERID")
    verify.add_argument("--config", help="TOML settings file")

    check = commands.add_parser("check-config", help="list missing or unusable settings; exit 1 if any")
    check.add_argument("--config", help="TOML settings file")
    return parser


def settings_for(argv: Sequence[str]) -> Settings:
    """The settings `roomd <argv>` runs with in this environment (a node of --workers included)."""
    return _settings(_parser().parse_args(argv))


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {}
    server: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        server["host"] = args.host
    if getattr(args, "port", None) is not None:
        server["port"] = args.port
    if server:
        overrides["server"] = server
    settings = load_settings(config_path=args.config, environ=os.environ, overrides=overrides or None)
    index = getattr(args, "node_index", None)
    node_count: int | None = getattr(args, "node_count", None)  # a node's: its supervisor's --workers
    workers: int = node_count if node_count is not None else getattr(args, "workers", 1)
    if index is None and workers <= 1:
        return settings
    # `--workers N`: the supervisor and its N nodes each log within an equal share of log.max_bytes
    overrides["log"] = {"max_bytes": log_share(settings.log.max_bytes, workers)}
    if index is not None:  # a node of `--workers`: its own logs and name, the shared port
        overrides["server"] = {**server, "reuse_port": True}
        overrides["log"]["dir"] = str(Path(settings.log.dir) / f"node-{index}")
        if not settings.cluster.node_name:
            overrides["cluster"] = {"node_name": f"{socket.gethostname()}-{index}"}
    return load_settings(config_path=args.config, environ=os.environ, overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as e:
        print(f"roomd: configuration error: {e}", file=sys.stderr)
        return CANNOT_START
    if args.command == "check-config":
        problems = config_problems(settings)
        for problem in problems:
            print(f"{problem.key}: {problem.problem}")
        print("no problems found" if not problems else f"{len(problems)} problem(s) found")
        return 1 if problems else 0
    try:
        signer = choose_user_signer(settings.im)
    except ConfigError as e:
        print(f"roomd: configuration error: {e}", file=sys.stderr)
        return CANNOT_START
    now = int(time.time())
    if args.command in ("usersig", "verify-usersig") and signer.development:
        print(
            "roomd: no key to sign or check userSigs with: set im.secret_key (UserSig v2) "
            "or im.private_key / im.private_key_file (v1)",
            file=sys.stderr,
        )
        return 1
    if args.command == "usersig":
        print(signer.signer.make(args.user_id, now=now, expire=settings.im.usersig_expire))
        return 0
    if args.command == "verify-usersig":
        result = signer.signer.verify(args.sig, args.user_id, now=now)
        if isinstance(result, VerifyFailure):
            print(f"does not verify: {result.value}")
            return 1
        print(f"verifies: issued at {result.issued_at}, valid for {result.expire} s")
        return 0
    if args.workers < 1:
        print("roomd: --workers: must be at least 1", file=sys.stderr)
        return CANNOT_START
    if args.workers > 1 and not settings.cluster.enabled:
        print(
            "roomd: configuration error: --workers > 1 needs cluster.redis_url (nodes share rooms through Redis)",
            file=sys.stderr,
        )
        return CANNOT_START
    if args.workers > 1 and settings.cluster.link_port:
        print(
            "roomd: configuration error: cluster.link_port: must be 0 with --workers > 1 (each node takes its own)",
            file=sys.stderr,
        )
        return CANNOT_START
    data_dir_lock: DataDirLock | None = None
    if args.node_index is not None:  # a node of --workers: its supervisor holds the lock and made the secret
        stop_with_the_supervisor()
    else:
        try:
            data_dir_lock = _prepare_data_dir(settings)
        except (DataDirUnavailable, SecretFileError) as e:
            print(f"roomd: {e}", file=sys.stderr)
            return CANNOT_START
    configure_logging(settings.log)
    try:
        if args.workers > 1:
            from roomd.supervisor import supervise

            argv = list(sys.argv[1:] if argv is None else argv)
            return trio.run(
                partial(supervise, argv, workers=args.workers, host=settings.server.host, port=settings.server.port)
            )
        from roomd.http.server import CannotListen
        from roomd.server import serve

        try:
            trio.run(serve, settings, signer)
        except (CannotListen, SecretFileError) as error:
            print(f"roomd: {error}", file=sys.stderr)
            return CANNOT_START
    finally:
        flush_logs()  # the log threads write every queued line before the process exits
        if data_dir_lock is not None:
            data_dir_lock.release()
    return 0


def _prepare_data_dir(settings: Settings) -> DataDirLock:
    """Lock server.data_dir for this process, then make sure the token secret is there and sound."""
    data_dir = Path(settings.server.data_dir)
    lock = lock_data_dir(data_dir)  # before anything else is written there
    try:
        if not settings.auth.token_secret:
            ensure_secret(data_dir / SECRET_FILE)
        check_revocations_readable(data_dir / REVOKED_FILE)
    except SecretFileError:
        lock.release()
        raise
    return lock


if __name__ == "__main__":
    sys.exit(main())
