"""WeChat mini-program login: jscode2session turns a login code into an openid.

GET <base>/sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code
-> {"openid": ..., "session_key": ...}  or  {"errcode": N, "errmsg": ...}
"""

from __future__ import annotations

import re

from roomd import upstream_replies

PATH = "/sns/jscode2session"
_OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def jscode2session_params(app_id: str, app_secret: str, code: str) -> dict[str, str]:
    return {"appid": app_id, "secret": app_secret, "js_code": code, "grant_type": "authorization_code"}


def parse_jscode2session(status_code: int, content: bytes) -> tuple[str | None, str]:
    """(openid, "") on success, (None, why) otherwise."""
    if status_code != 200:
        return None, f"HTTP {status_code}"
    if upstream_replies.too_large(content):
        return None, f"reply is larger than {upstream_replies.MAX_REPLY_BYTES} bytes"
    try:
        reply = upstream_replies.loads(content)
    except upstream_replies.NotJson:
        return None, "reply is not JSON"
    if not isinstance(reply, dict):
        return None, "reply is not a JSON object"
    if reply.get("errcode"):
        errcode, errmsg = reply.get("errcode"), reply.get("errmsg", "")
        return None, f"errcode {upstream_replies.shortened(errcode)}: {upstream_replies.shortened(errmsg)}"
    openid = reply.get("openid")
    if not isinstance(openid, str) or not _OPENID.match(openid):
        return None, "reply has no usable openid"
    return openid, ""
