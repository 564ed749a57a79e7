"""The account's SIP users and web users -> the gateway's telephony user directory. Pure.

One directory entry per SIP user (``user_id`` = its ``sipuid``, the value Notify sends as
``peer`` and click-to-dial expects), enriched with the web user it belongs to (name, e-mail)
through ``sip_users.webuser_id`` or ``users.primary_sip_user_id``. Web users without a SIP
user cannot ring or be rung, so they are not listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway import TelephonyUser, normalize_number


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def _full_name(user: dict[str, Any]) -> str | None:
    parts = [_str(user.get("first_name")), _str(user.get("last_name"))]
    name = " ".join(p for p in parts if p)
    return name or None


def build_directory(sip_users: Iterable[dict[str, Any]], web_users: Iterable[dict[str, Any]],
                    region: str = "DE") -> list[TelephonyUser]:
    """Merge both lists into telephony users, one per SIP user with a ``sipuid``."""
    by_id: dict[str, dict[str, Any]] = {}
    by_primary_sip: dict[str, dict[str, Any]] = {}
    for account_user in web_users:
        wid = _str(account_user.get("id"))
        if wid:
            by_id[wid] = account_user
        primary = _str(account_user.get("primary_sip_user_id"))
        if primary:
            by_primary_sip.setdefault(primary, account_user)
    out: dict[str, TelephonyUser] = {}
    for sip in sip_users:
        sipuid = _str(sip.get("sipuid"))
        if not sipuid:
            continue
        embedded = sip.get("webuser")
        web: dict[str, Any] = (by_id.get(_str(sip.get("webuser_id")) or "")
                               or (embedded if isinstance(embedded, dict) else None)
                               or by_primary_sip.get(_str(sip.get("id")) or "") or {})
        name = _full_name(web) or _str(sip.get("name")) or _str(sip.get("description"))
        extension = _str(sip.get("did")) or _str(web.get("did"))
        caller_id = normalize_number(_str(sip.get("callerid")), region)
        out[sipuid] = TelephonyUser(
            user_id=sipuid, name=name, email=_str(web.get("email")), extension=extension,
            numbers=(caller_id,) if caller_id else ())
    return list(out.values())
