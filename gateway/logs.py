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

_PATTERNS = [
    (re.compile(r"https?://[^\s\"'<>]+", re.I), "[url]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"(?i)(bearer|token|secret|password|auth|key)([\"'=:\s]+)[^\s\"'&,;]+"), r"\1\2[secret]"),
    (re.compile(r"\+?\d[\d\s().\-/]{5,}\d"), "[number]"),
]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """Replace anything that looks like a URL, e-mail, secret or phone number."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


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
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
