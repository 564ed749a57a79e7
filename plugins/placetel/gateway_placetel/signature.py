"""``X-PLACETEL-SIGNATURE``: hex HMAC-SHA256 of the raw body, keyed with the Notify secret.

Sans-I/O: bytes in, a yes or no out. The body is hashed exactly as received (never a
re-encoded form), and the comparison is constant-time on bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import string

HEADER = "X-PLACETEL-SIGNATURE"
_HEX = frozenset(string.hexdigits)


def sign(secret: str, body: bytes) -> str:
    """The lower-case hex signature Placetel sends for ``body``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, presented: str | None) -> bool:
    """True when ``presented`` is the signature of ``body`` under ``secret``.

    Upper-case hex and surrounding whitespace are tolerated; anything else (missing, wrong
    length, not hex, wrong value) is refused.
    """
    if not secret or presented is None:
        return False
    given = presented.strip().lower()
    if len(given) != 64 or not set(given) <= _HEX:
        return False
    return hmac.compare_digest(given.encode("ascii"), sign(secret, body).encode("ascii"))
