"""`GET <prefix>/utils/...`: IM login info for later clients, log files and a settings check.

The log file routes only ever read files inside `log.dir`: a name is one or
two plain path segments (`response/response-2026-11-29-10.log`), and its
resolved path must stay inside the directory, so `..`, encoded tricks,
absolute paths and symlinks pointing out are all refused with 400. When
`auth.admin_key` is set they, and check_config, need
`Authorization: Bearer <admin_key>`; without it they answer only the
addresses in `[ops] allow` (see ops_access).
"""

from __future__ import annotations

import re
from pathlib import Path

from quart import Response, request

from roomd.config.report import config_problems
from roomd.web import token_auth
from roomd.web.context import current_context
from roomd.web.envelope import Code, RequestError, ok
from roomd.web.ops_access import require_ops_caller
from roomd.web.rooms import im_login_fields
from roomd.web.validation import Params

_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


async def get_login_info() -> Response:
    ctx = current_context()
    params = Params(dict(request.args))
    user_id = params.ident("userID")
    if ctx.token_mode:  # a userSig for somebody else would let anybody log in as them
        token_auth.authenticate(ctx, request.args)
    return ok(**im_login_fields(ctx, user_id))


async def logfilelist() -> Response:
    ctx = current_context()
    require_ops_caller(ctx)
    base = Path(ctx.settings.log.dir)
    files = []
    if base.is_dir():
        for path in sorted(base.rglob("*.log")):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                files.append(
                    {"file": path.relative_to(base).as_posix(), "size": stat.st_size, "modified": int(stat.st_mtime)}
                )
    return ok(files=files)


async def getlogfile() -> Response:
    ctx = current_context()
    require_ops_caller(ctx)
    path = log_file_path(Path(ctx.settings.log.dir), request.args.get("file", ""))
    return Response(path.read_bytes(), status=200, content_type="text/plain; charset=utf-8")


async def check_config() -> Response:
    ctx = current_context()
    require_ops_caller(ctx)
    problems = config_problems(ctx.settings)
    return ok(problems=[{"key": p.key, "problem": p.problem} for p in problems], clean=not problems)


def log_file_path(log_dir: Path, name: str) -> Path:
    """The file `name` inside `log_dir`; 400 for anything that is not plainly inside it."""
    segments = name.split("/")
    if not name or len(segments) > 2 or not all(_PLAIN_SEGMENT.match(s) for s in segments):
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
