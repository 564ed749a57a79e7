"""Webex id helpers: public ids are base64 (without padding) of ``ciscospark://…/<uuid>``."""

from __future__ import annotations

import base64
import binascii
import uuid


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def webex_id_to_uuid(webex_id: str) -> str | None:
    """The last path segment of a decoded Webex id (``…/PEOPLE/<uuid>`` → uuid), or ``None``."""
    try:
        padded = webex_id + "=" * (-len(webex_id) % 4)
        decoded = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=False).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    return decoded.rsplit("/", 1)[-1] or None


def session_key(session_id: str) -> str:
    """A call session id in one canonical form (lower-case UUID) for joining events.

    Telephony events carry ``callSessionId`` as base64 of the bare UUID, recordings carry the
    UUID itself: both map to the UUID. Anything else is kept as it is.
    """
    text = session_id.strip()
    if _is_uuid(text):
        return text.lower()
    decoded = webex_id_to_uuid(text)
    if decoded is not None and _is_uuid(decoded):
        return decoded.lower()
    return text
