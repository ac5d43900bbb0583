"""Request bodies and the parameter rules of the legacy protocol.

Every rule fails with a `RequestError` whose detail names the field, before
any actor is asked anything: bad input never changes state.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from roomd.web.envelope import Code, RequestError

MAX_ID_CHARS = 64
MAX_NAME_CHARS = 256
MAX_AVATAR_CHARS = 1024
MAX_URL_CHARS = 2048
MAX_INFO_BYTES = 1024
MAX_PAGE = 100
DEFAULT_PAGE = 20
_WHITESPACE_OR_FORBIDDEN = re.compile(r"[\s/?#&]")
_PUSH_URL_SCHEMES = ("rtmp", "http", "https")
MAX_COUNT_DIGITS = 9
_ASCII_DIGITS = re.compile(rf"[0-9]{{1,{MAX_COUNT_DIGITS}}}")


def parse_body(data: bytes, mimetype: str) -> dict[str, Any]:
    """A request body as a dict: JSON (whatever the content type) or form-encoded."""
    if not data.strip():
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(Code.BAD_PARAMETER, "request body is not UTF-8", status=400) from None
    # curl -d sends JSON as a form: a body that starts like a JSON object is read as JSON
    if mimetype == "application/x-www-form-urlencoded" and not text.lstrip().startswith("{"):
        return parse_form(text, "request body", strict=True)
    try:
        body = json.loads(text)
    except RecursionError:
        raise RequestError(Code.BAD_PARAMETER, "request body is nested too deeply", status=400) from None
    except ValueError:  # includes integers longer than Python's digit limit
        raise RequestError(Code.BAD_PARAMETER, "request body is not valid JSON", status=400) from None
    if not isinstance(body, dict):
        raise RequestError(
            Code.BAD_PARAMETER,
            f"request body must be a JSON object, not {_json_kind(body)}",
            status=400,
        )
    return body


def parse_form(text: str, what: str, *, strict: bool = False) -> dict[str, str]:
    """`name=value&...` as a dict; code 1 (HTTP 400) when a percent-escape is not UTF-8 (or, `strict`,
    when a pair has no `=`), rather than a value quietly changed to U+FFFD."""
    try:
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=strict, errors="strict"))
    except UnicodeDecodeError:
        raise RequestError(Code.BAD_PARAMETER, f"{what} has percent-escapes that are not UTF-8", status=400) from None
    except ValueError:
        raise RequestError(Code.BAD_PARAMETER, f"{what} is not valid form encoding", status=400) from None


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _bad(detail: str) -> RequestError:
    return RequestError(Code.BAD_PARAMETER, detail)


class Params:
    """Typed, checked access to one request's parameters."""

    def __init__(self, values: dict[str, Any], *, caller: str | None = None, client: str = "-") -> None:
        self._values = values
        self.caller = caller  # token mode: the userID the token proves; None in open mode
        self.client = client  # the client's network address

    def has(self, name: str) -> bool:
        return self._values.get(name) is not None

    def raw(self, name: str) -> object:
        """The value as the client sent it, unchecked (None when missing): for parameters whose
        checking is the caller's, such as one that may be an object or a string."""
        return self._values.get(name)

    def string(self, name: str, *, required: bool = True, max_chars: int | None = None) -> str | None:
        value = self._values.get(name)
        if value is None:
            if required:
                raise _bad(f"{name} is required")
            return None
        if not isinstance(value, str):
            raise _bad(f"{name} must be a string")
        if max_chars is not None and len(value) > max_chars:
            raise _bad(f"{name} is longer than {max_chars} characters")
        if not value.isascii():
            check_unicode(name, value)
        return value

    def required_string(self, name: str, *, max_chars: int | None = None) -> str:
        value = self.string(name, max_chars=max_chars)
        assert value is not None
        return value

    def ident(self, name: str, *, max_chars: int = MAX_ID_CHARS) -> str:
        value = self.optional_ident(name, max_chars=max_chars)
        if value is None:
            raise _bad(f"{name} is required")
        return value

    def optional_ident(self, name: str, *, max_chars: int = MAX_ID_CHARS, empty_is_absent: bool = False) -> str | None:
        value = self.string(name, required=False, max_chars=max_chars)
        if value is None or (empty_is_absent and value == ""):
            return None
        check_ident(name, value)
        return value

    def name(self, name: str, *, required: bool = True) -> str:
        return self.string(name, required=required, max_chars=MAX_NAME_CHARS) or ""

    def avatar(self, name: str) -> str:
        return self.string(name, required=False, max_chars=MAX_AVATAR_CHARS) or ""

    def push_url(self, name: str = "pushURL") -> str:
        value = self.required_string(name, max_chars=MAX_URL_CHARS)
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in _PUSH_URL_SCHEMES
            or not parts.netloc
            or any(c.isspace() for c in value)
        ):
            raise _bad(f"{name} must be an rtmp://, http:// or https:// URL")
        return value

    def info(self, *names: str, required: bool) -> str | None:
        """Room info sent under any of `names` (they are one value); code 10 when too long."""
        given = {n: self.string(n, required=False) for n in names}
        values = {v for v in given.values() if v is not None}
        if not values:
            if required:
                raise _bad(f"{' or '.join(names)} is required")
            return None
        if len(values) > 1:
            raise _bad(f"{' and '.join(names)} are the same value and must not differ")
        value = values.pop()
        size = len(value.encode("utf-8"))
        if size > MAX_INFO_BYTES:
            field = next(n for n, v in given.items() if v is not None)
            raise RequestError(
                Code.INFO_TOO_LONG,
                f"{field} is {size} bytes of UTF-8; at most {MAX_INFO_BYTES} are allowed",
            )
        return value

    def count(self, name: str, *, default: int, maximum: int | None = None) -> int:
        """A non-negative integer (a JSON number or a decimal string of ASCII digits)."""
        value = self._values.get(name)
        if value is None:
            return default
        number = parse_count(value)
        if number is None:
            raise _bad(f"{name} must be a non-negative integer")
        return min(number, maximum) if maximum is not None else number


def parse_count(value: object) -> int | None:
    """A non-negative integer from a JSON number or a decimal string; None when it is not one.

    Only ASCII digits count ("²".isdigit() is true in Python), and at most
    MAX_COUNT_DIGITS of them, so no int() of a huge or exotic text is attempted.
    """
    if isinstance(value, str):
        text = value.strip()
        if not _ASCII_DIGITS.fullmatch(text):
            return None
        return int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**MAX_COUNT_DIGITS:
        return value
    return None


def check_unicode(name: str, value: str) -> None:
    """Text that cannot be written as UTF-8 (a lone surrogate such as "\\ud800") is refused."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{name} is not valid Unicode text (it contains a lone surrogate)") from None


def check_ident(name: str, value: str) -> None:
    if not value:
        raise _bad(f"{name} must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise _bad(f"{name} is longer than {MAX_ID_CHARS} characters")
    if not value.isprintable() or _WHITESPACE_OR_FORBIDDEN.search(value):
        raise _bad(f"{name} must be printable, without whitespace or any of / ? # &")
    if value in (".", ".."):  # a URL path cannot hold them as a segment: the admin API could not name them
        raise _bad(f"{name} must not be . or ..")
