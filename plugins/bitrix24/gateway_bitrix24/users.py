"""Which Bitrix24 user a call belongs to, and which telephony user a CRM user is.

Order: the admin's explicit override (``usermap``, by telephony e-mail or extension), then a
cached match, then ``user.get`` by extension (``UF_PHONE_INNER``) and by e-mail. Matches are
cached per tenant for a day, misses for an hour, keyed by connection and telephony user id (no
personal data in the cache). A call no user can be named for goes to the tenant's
**responsible user** (:func:`responsible_user`): the one the admin chose, else the user who
installed the app.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from gateway import BadRequest, CallEvent, PluginContext, PluginStorage, TelephonyUser

from .api import Bitrix24Client
from .parse import positive_id
from .records import get_portal, put_portal
from .settings import TenantSettings

USERMAP = "usermap"
USERCACHE = "usercache"
HIT_TTL = 24 * 3600
MISS_TTL = 3600


def override_key(*, email: str | None = None, extension: str | None = None) -> str:
    if email:
        return f"email:{email.strip().lower()}"
    if extension:
        return f"ext:{extension.strip()}"
    raise BadRequest("name the telephony user by email or extension")


@dataclass(frozen=True, slots=True)
class Override:
    bitrix24_user_id: int
    email: str | None = None
    extension: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bitrix24_user_id": self.bitrix24_user_id}
        if self.email:
            out["email"] = self.email
        if self.extension:
            out["extension"] = self.extension
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Override:
        if not isinstance(data, dict) or set(data) - {"bitrix24_user_id", "email", "extension"}:
            raise BadRequest("each entry needs bitrix24_user_id and one of email or extension")
        uid, email, ext = data.get("bitrix24_user_id"), data.get("email"), data.get("extension")
        if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
            raise BadRequest("bitrix24_user_id must be a positive integer")
        if bool(email) == bool(ext):
            raise BadRequest("each entry needs exactly one of email or extension")
        if email is not None and (not isinstance(email, str) or "@" not in email or len(email) > 320):
            raise BadRequest("email is not an e-mail address")
        if ext is not None and (not isinstance(ext, str) or not ext.strip() or len(ext) > 32):
            raise BadRequest("extension must be a short string")
        return cls(uid, email.strip().lower() if email else None, ext.strip() if ext else None)


async def replace_overrides(st: PluginStorage, entries: list[Override]) -> None:
    await st.delete(USERMAP)
    await st.delete(USERCACHE)  # matches made before may now be wrong
    for entry in entries:
        await st.put(USERMAP, override_key(email=entry.email, extension=entry.extension),
                     entry.to_dict(), index=str(entry.bitrix24_user_id))


async def list_overrides(st: PluginStorage) -> list[Override]:
    return [Override.from_dict(v) for _, v in await st.all(USERMAP)]


def _user_id(raw: Any) -> int | None:
    return positive_id(raw.get("ID") if isinstance(raw, dict) else None)


async def _search(client: Bitrix24Client, user: TelephonyUser) -> int | None:
    if user.extension:
        found = await client.call("user.get", {"FILTER": {"UF_PHONE_INNER": user.extension, "ACTIVE": True}})
        for item in found if isinstance(found, list) else []:
            if isinstance(item, dict) and str(item.get("UF_PHONE_INNER") or "").strip() == user.extension.strip():
                uid = _user_id(item)
                if uid:
                    return uid
    if user.email:
        found = await client.call("user.get", {"FILTER": {"EMAIL": user.email, "ACTIVE": True}})
        for item in found if isinstance(found, list) else []:
            if isinstance(item, dict) and str(item.get("EMAIL") or "").strip().lower() == user.email.strip().lower():
                uid = _user_id(item)
                if uid:
                    return uid
    return None


async def crm_user_for(ctx: PluginContext, client: Bitrix24Client, event: CallEvent,
                       default_user_id: int | None = None) -> int | None:
    """The Bitrix24 user id for an event's telephony user (``local_user``), else the default."""
    st = client.st
    tel = await ctx.users.for_event(event)
    if tel is not None and tel.status == "active":
        for key in ([override_key(email=tel.email)] if tel.email else []) + \
                   ([override_key(extension=tel.extension)] if tel.extension else []):
            hit = await st.get(USERMAP, key)
            if isinstance(hit, dict):
                return int(hit["bitrix24_user_id"])
        ckey = f"{event.connection_id}|{tel.user_id}"
        cached = await st.get(USERCACHE, ckey)
        now = int(time.time())
        if isinstance(cached, dict) and now - int(cached.get("at", 0)) < (HIT_TTL if cached.get("id") else MISS_TTL):
            found = cached.get("id")
        else:
            found = await _search(client, tel)
            await st.put(USERCACHE, ckey, {"id": found, "at": now})
        if found:
            return int(found)
    return default_user_id


async def telephony_identity(client: Bitrix24Client, bitrix24_user_id: int) -> tuple[str | None, str | None]:
    """(email, extension) to find a CRM user's telephony user for click-to-call."""
    overrides = await client.st.find(USERMAP, str(bitrix24_user_id))
    if overrides:
        entry = Override.from_dict(overrides[0][1])
        return entry.email, entry.extension
    found = await client.call("user.get", {"ID": bitrix24_user_id})
    for item in found if isinstance(found, list) else []:
        if _user_id(item) == bitrix24_user_id:
            email = str(item.get("EMAIL") or "").strip().lower() or None
            ext = str(item.get("UF_PHONE_INNER") or "").strip() or None
            return email, ext
    return None, None


async def responsible_user(client: Bitrix24Client, settings: TenantSettings) -> int | None:
    """Who gets the calls no agent can be named for: the tenant's ``responsible_user_id``, else
    the user who installed the app. A portal installed by a version that did not record the
    installer asks Bitrix24 once who authorised our tokens (``profile``: the installer) and
    remembers it."""
    if settings.responsible_user_id:
        return settings.responsible_user_id
    portal = await get_portal(client.st)
    if portal is not None and portal.installer_user_id:
        return portal.installer_user_id
    uid = _user_id(await client.call("profile", {}))
    if uid and portal is not None:
        await put_portal(client.st, replace(portal, installer_user_id=uid))
    return uid
