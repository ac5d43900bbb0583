"""Who is calling: token checks for `auth.mode = "token"`, login and logout.

In token mode every room route except get_im_login_info and login needs
`?userID=&token=`, and a request may only act for that user: a body
`userID` that differs from it is refused (code 7), so nobody can heartbeat,
leave, join or destroy on behalf of somebody else. A logout answers only
once its revocation is on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loguru import logger

from roomd.auth.tokens import RevocationNotDurable
from roomd.qcloud.usersig import VerifyFailure
from roomd.web.context import AppContext
from roomd.web.envelope import Code, Reply, RequestError, ok_reply
from roomd.web.validation import Params, check_ident

OPEN_ENDPOINTS = frozenset({"get_im_login_info", "login"})
log = logger.bind(actor="auth")


def _refuse(detail: str) -> RequestError:
    return RequestError(Code.AUTH_FAILED, detail)


def authenticate(ctx: AppContext, query: Mapping[str, str]) -> str:
    """The caller's userID, proven by `?userID=&token=`; code 7 otherwise."""
    user_id = query.get("userID", "")
    token = query.get("token", "")
    if not user_id or not token:
        raise _refuse("this route needs ?userID=&token= from login")
    try:
        check_ident("userID", user_id)
    except RequestError:
        raise _refuse("the userID in the query is not a valid ID") from None
    why = ctx.tokens.check(user_id, token, now=ctx.now())
    if why is not None:
        raise _refuse(why)
    return user_id


def require_acting_for_self(caller: str, body: Mapping[str, Any]) -> None:
    acting_for = body.get("userID")
    if acting_for is not None and acting_for != caller:
        raise _refuse(f"the token belongs to {caller}, who may not act for {acting_for!r}")


async def login(ctx: AppContext, params: Params) -> Reply:
    """Verify a UserSig and answer a token: `login?sdkAppID=&accountType=&userID=&userSig=`."""
    user_id = params.ident("userID")
    if ctx.is_reserved_identity(user_id):
        raise _refuse(f"{user_id} is a reserved identity; it cannot log in to roomd")
    user_sig = params.required_string("userSig", max_chars=4096)
    sdk_app_id = params.string("sdkAppID", required=False, max_chars=20)
    params.string("accountType", required=False, max_chars=64)
    if sdk_app_id is not None and sdk_app_id != str(ctx.settings.im.sdk_app_id):
        raise _refuse(f"sdkAppID {sdk_app_id} is not this server's")
    ctx.charge_login(params.client)  # every attempt: a wrong userSig is a guess
    verified = ctx.user_signer.verify(user_sig, user_id, now=ctx.now())
    if isinstance(verified, VerifyFailure):
        log.info("login refused user={} because {}", user_id, verified.value)
        raise _refuse(verified.value)
    issued = ctx.issue_token(user_id)
    log.info("login user={} token expires={}", user_id, issued.expires)
    return ok_reply(userID=user_id, token=issued.token, expires=issued.expires)


async def logout(ctx: AppContext, caller: str | None, query: Mapping[str, str]) -> Reply:
    token = query.get("token", "")
    if caller is None:  # open mode: a token may still be given, and is revoked if it is valid
        user_id = query.get("userID", "")
        if not token or ctx.tokens.check(user_id, token, now=ctx.now()) is not None:
            return ok_reply()
        caller = user_id
    try:
        await ctx.tokens.revoke(token, now=ctx.now())
    except RevocationNotDurable as e:
        log.warning("logout user={} revoked in memory only: {}", caller, e)
        raise RequestError(
            Code.BUSY,
            f"{e}; the token is refused from now on, and roomd tries to save its revocation again every "
            "second until it is saved",
            status=503,
        ) from None
    log.info("logout user={}", caller)
    return ok_reply()
