"""``X-Spark-Signature``: lowercase hex HMAC-SHA1 of the raw body, keyed by the webhook secret.

Pure functions (bytes in, bool out), compared in constant time on bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

HEADER = "X-Spark-Signature"


def sign(secret: str, body: bytes) -> str:
    """The signature Webex sends for ``body`` delivered by a webhook with ``secret``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """True when the request's ``X-Spark-Signature`` matches ``body`` (constant time)."""
    given = headers.get(HEADER)
    if not given:
        return False
    try:
        presented = given.strip().lower().encode("ascii")
    except UnicodeError:
        return False
    return hmac.compare_digest(presented, sign(secret, body).encode("ascii"))
