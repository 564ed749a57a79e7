"""Structured logs: one JSON object per line, with a redaction layer in front.

Code should never log personal data in the first place; the redaction layer is the safety
net for what slips through (a vendor's error text quoting a number, a URL with a token).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
tenant_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_id", default=None)

_URL = re.compile(r"https?://[^\s\"'<>]+", re.I)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
#: A secret only in a ``name=value`` / ``name: value`` shape whose name says so, or as the
#: credential of an ``Authorization`` scheme: "token refreshed" is a message, not a secret.
_KEY_VALUE = re.compile(
    r"(?i)\b([\w-]*(?:token|secret|passw(?:or)?d|auth|key|signature|sig)[\w-]*\]?)"
    r"(\s*[\"']?\s*[=:]\s*[\"']?)((?:bearer|basic)\s+)?[^\s\"'&,;]+")
_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"'&,;]+")
#: Shapes that hold digits without being phone numbers are matched first and kept: ISO dates
#: and times, UUIDs, IPv4 addresses, and any word with a letter in it (hex ids, names).
_NUMBER = re.compile(r"""
    (?P<keep>
        \d{4}-\d{2}-\d{2}(?:[T\s]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?
      | \d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?
      | [0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}
      | \d{1,3}(?:\.\d{1,3}){3}\b
      | \w*[A-Za-z_]\w*
    )
    | (?P<number>\+?\d[\d\s().\-/]{5,}\d)
""", re.X)
_MIN_DIGITS = 7

#: Loggers kept at WARNING whatever the level: the access log (paths carry ids), and the
#: database drivers, whose DEBUG lines hold every statement with its parameters.
QUIET_LOGGERS = ("aiohttp.access", "aiosqlite", "asyncpg", "psycopg", "psycopg.pool")

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _number(match: re.Match[str]) -> str:
    text = match.group(0)
    if match.group("number") is None or sum(ch.isdigit() for ch in text) < _MIN_DIGITS:
        return text
    return "[number]"


def redact(text: str) -> str:
    """Replace URLs, e-mails, secrets in ``name=value`` or ``Bearer x`` shapes, and phone
    numbers; ids, dates, times and plain words stay as they are."""
    text = _URL.sub("[url]", text)
    text = _EMAIL.sub("[email]", text)
    text = _KEY_VALUE.sub(r"\1\2\3[secret]", text)
    text = _SCHEME.sub(r"\1 [secret]", text)
    return _NUMBER.sub(_number, text)


def looks_personal(text: str) -> bool:
    """Whether a value that must be an id holds a URL, an e-mail, a secret, or a phone number
    written as one (with ``+`` or separators). A bare digit string passes: it cannot be told
    from a numeric or hexadecimal id, and the core only handles numbers in E.164 (``+``)."""
    if _URL.search(text) or _EMAIL.search(text) or _KEY_VALUE.search(text) or _SCHEME.search(text):
        return True
    for match in _NUMBER.finditer(text):
        number = match.group("number")
        if number and not number.isdigit() and sum(ch.isdigit() for ch in number) >= _MIN_DIGITS:
            return True
    return False


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            out["request_id"] = rid
        tid = tenant_id.get()
        if tid:
            out["tenant"] = tid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = _clean(value)
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__  # type only: messages may carry data
        return orjson.dumps(out).decode()


def setup(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
