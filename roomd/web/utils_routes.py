"""`GET <prefix>/utils/...`: IM login info for later clients, log files and a settings check.

The log file routes only ever read files inside `log.dir`: a name is one or
two plain path segments (`response/response-2026-11-29-10.log`), and its
resolved path must stay inside the directory, so `..`, encoded tricks,
absolute paths and symlinks pointing out are all refused with 400. When
`auth.admin_key` is set they, and check_config, need
`Authorization: Bearer <admin_key>`; without it they answer only the
addresses in `[ops] allow` (see ops_access).

Log files can be large and their disk slow, so nothing here touches the
file system on the trio thread: the name check, the listing, the open,
every read and the settings check run on worker threads. A file is sent
in chunks as they are read, up to its size when it was opened (a file
still being written is not followed), never held in memory whole.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import trio

from roomd.config.report import config_problems
from roomd.web import token_auth
from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, RequestError, ok_reply
from roomd.web.ops_access import require_ops_caller
from roomd.web.pipeline import Call, Handler
from roomd.web.rooms import im_login_fields, new_identity
from roomd.web.validation import Params, parse_body

_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
CHUNK_BYTES = 64 * 1024
TEXT = "text/plain; charset=utf-8"


async def get_login_info(ctx: AppContext, call: Call) -> Reply:
    """GET or POST. Without a userID: a fresh identity, as get_im_login_info makes it (what the
    later clients log in with). With one: its userSig (token mode: for the token's user only)."""
    values = {**call.query, **(parse_body(call.body, call.mimetype) if call.body else {})}
    params = Params(values, client=call.request.client)
    if params.string("userID", required=False) in (None, ""):
        return await new_identity(ctx, params, deadline=call.deadline)
    user_id = params.ident("userID")
    if ctx.token_mode:  # a userSig for somebody else would let anybody log in as them
        caller = token_auth.authenticate(ctx, call.query)
        token_auth.require_acting_for_self(caller, values)
    ctx.charge_login(params.client)
    return ok_reply(**im_login_fields(ctx, user_id))


async def logfilelist(ctx: AppContext, call: Call) -> Reply:
    require_ops_caller(ctx, call)
    return ok_reply(files=await trio.to_thread.run_sync(log_files, Path(ctx.settings.log.dir)))


async def getlogfile(ctx: AppContext, call: Call) -> Reply:
    require_ops_caller(ctx, call)
    name = call.query.get("file", "")
    path = await trio.to_thread.run_sync(log_file_path, Path(ctx.settings.log.dir), name)
    if call.request.method == "HEAD":  # no body is sent: nothing to open
        return Reply(Code.OK, content_type=TEXT, stream=_no_chunks())
    file, size = await trio.to_thread.run_sync(_open_with_size, path, name)
    return Reply(Code.OK, content_type=TEXT, stream=_chunks(file, size))


async def check_config(ctx: AppContext, call: Call) -> Reply:
    require_ops_caller(ctx, call)
    problems = await trio.to_thread.run_sync(config_problems, ctx.settings)  # it looks at files and directories
    return ok_reply(problems=[{"key": p.key, "problem": p.problem} for p in problems], clean=not problems)


def log_file_path(log_dir: Path, name: str) -> Path:
    """The file `name` inside `log_dir`; 400 for anything that is not plainly inside it."""
    segments = name.split("/")
    if not name or len(segments) > 2 or not all(_PLAIN_SEGMENT.fullmatch(s) for s in segments):
        raise RequestError(
            Code.BAD_PARAMETER,
            "file must name a log file inside the log directory, like response/response-2026-01-01-10.log",
            status=400,
        )
    base = log_dir.resolve()
    target = (base / name).resolve()
    if not target.is_relative_to(base):
        raise RequestError(Code.BAD_PARAMETER, "file points outside the log directory", status=400)
    if not target.is_file():
        raise RequestError(Code.BAD_PARAMETER, f"there is no log file {name}", status=404)
    return target


def log_files(log_dir: Path) -> list[dict[str, Any]]:
    """Every regular `*.log` file below `log_dir`, with its size and modification time."""
    files: list[dict[str, Any]] = []
    if log_dir.is_dir():
        for path in sorted(log_dir.rglob("*.log")):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                files.append(
                    {"file": path.relative_to(log_dir).as_posix(), "size": stat.st_size, "modified": int(stat.st_mtime)}
                )
    return files


def _open_with_size(path: Path, name: str) -> tuple[BinaryIO, int]:
    try:
        file = path.open("rb")
    except FileNotFoundError:  # deleted (retention, size budget) since it was checked
        raise RequestError(Code.BAD_PARAMETER, f"there is no log file {name}", status=404) from None
    return file, os.fstat(file.fileno()).st_size


async def _chunks(file: BinaryIO, size: int) -> AsyncIterator[bytes]:
    """The first `size` bytes of `file`, read on worker threads; the file is closed at the end,
    also when the client goes away."""
    try:
        left = size
        while left > 0:
            chunk = await trio.to_thread.run_sync(file.read, min(CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        with trio.CancelScope(shield=True):  # closes even when the sending was cancelled
            await trio.to_thread.run_sync(file.close)


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


PAGES: dict[str, Handler] = {
    "get_login_info": get_login_info,
    "logfilelist": logfilelist,
    "getlogfile": getlogfile,
    "check_config": check_config,
}
