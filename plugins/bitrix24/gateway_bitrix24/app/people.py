"""The portal's users, as the app's pages need them: to choose from, and to match telephone
users by e-mail and extension the way the sink does (:mod:`..users`).

Read with the app's own token (``user.get``, 50 per page) and kept in memory for a minute per
tenant, so opening a page does not cost the portal's rate limit each time. Nothing is stored.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any

from gateway import PluginContext

from ..api import Bitrix24Client

#: Seconds the list is reused; a user added in the portal shows up at most this late.
CACHE_SECONDS = 60.0
#: ``user.get`` pages at most (50 users each): portals with more see the first 1,000.
MAX_PAGES = 20
PAGE = 50


@dataclass(frozen=True, slots=True)
class Person:
    """An active employee of the portal."""

    id: int
    name: str
    email: str | None = None
    extension: str | None = None  #: ``UF_PHONE_INNER``


_cache: weakref.WeakKeyDictionary[PluginContext, dict[str, tuple[float, list[Person]]]] = weakref.WeakKeyDictionary()


def person_of(raw: Any) -> Person | None:
    """A ``user.get`` item; ``None`` for anything without a usable id."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("ID")
    uid = int(value) if isinstance(value, (int, str)) and str(value).isdigit() else 0
    if uid <= 0:
        return None
    email = str(raw.get("EMAIL") or "").strip().lower() or None
    ext = str(raw.get("UF_PHONE_INNER") or "").strip() or None
    name = " ".join(str(raw.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
    return Person(uid, name or email or f"#{uid}", email, ext)


async def people(ctx: PluginContext, tenant: str) -> list[Person]:
    """The portal's active employees, by name. Raises what a REST call raises."""
    cached = _cache.get(ctx, {}).get(tenant)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    client = Bitrix24Client(ctx, tenant)
    found: dict[int, Person] = {}
    for page in range(MAX_PAGES):
        items = await client.call("user.get", {"FILTER": {"ACTIVE": True, "USER_TYPE": "employee"},
                                               "start": page * PAGE})
        batch = [p for p in map(person_of, items if isinstance(items, list) else []) if p is not None]
        found.update((p.id, p) for p in batch)
        if len(batch) < PAGE:
            break
    listed = sorted(found.values(), key=lambda p: (p.name.casefold(), p.id))
    _cache.setdefault(ctx, {})[tenant] = (time.monotonic(), listed)
    return listed


def forget(ctx: PluginContext, tenant: str) -> None:
    """Drop the tenant's list (after a change in the portal, or an uninstall)."""
    _cache.get(ctx, {}).pop(tenant, None)
